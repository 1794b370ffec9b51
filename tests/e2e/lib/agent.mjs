// `keytrail run` around a scenario, as an operator runs it, and what the
// checks every scenario shares (e2e.test.mjs) read: its records, every file
// it wrote.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const KEYTRAIL = process.env.KEYTRAIL_BINARY;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Agent {
	constructor(dir, config = '') {
		this.dir = dir;
		this.out = join(dir, 'out.jsonl');
		this.state = join(dir, 'state');
		const cfg = join(dir, 'keytrail.yaml');
		writeFileSync(cfg, 'correlate:\n  loopback_upstreams: true\n' + config, { mode: 0o600 });
		writeFileSync(this.out, '');
		this.stderr = '';
		this.proc = spawn(KEYTRAIL, ['run', '-c', cfg, '--state-dir', this.state, '-o', this.out,
		                             '--events', '--record', join(dir, 'inputs.ktr')],
		                  { stdio: ['ignore', 'ignore', 'pipe'] });
		this.proc.stderr.on('data', (d) => (this.stderr += d));
		this.exited = new Promise((r) => this.proc.on('exit', (code, sig) => r({ code, sig })));
	}

	records() {
		return readFileSync(this.out, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
	}

	async waitFor(pred, ms = 15000) {
		const end = Date.now() + ms;
		for (;;) {
			const found = this.records().filter(pred);
			if (found.length || Date.now() > end)
				return found;
			await sleep(100);
		}
	}

	async waitForAll(pred, ms = 15000) {
		const end = Date.now() + ms;
		while (!pred(this.records()) && Date.now() < end)
			await sleep(100);
	}

	async ready() {
		const r = await this.waitFor((r) => r.type === 'ready', 20000);
		if (!r.length)
			throw new Error(`keytrail did not become ready: ${this.stderr}`);
	}

	async stop() {
		this.proc.kill('SIGTERM');
		const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
		const st = await this.exited;
		clearTimeout(timer);
		return st;
	}

	// Every file the agent wrote under dir, as text (gzip segments inflated).
	writtenFiles() {
		const files = [];
		const walk = (d) => {
			for (const n of readdirSync(d)) {
				const p = join(d, n);
				if (statSync(p).isDirectory())
					walk(p);
				else
					files.push(p);
			}
		};
		walk(this.dir);
		return files.map((p) => {
			let data = readFileSync(p);
			if (p.endsWith('.gz'))
				data = gunzipSync(data);
			return { path: p, data };
		});
	}
}

export function isLoopback(addr) {
	return /^127\./.test(addr) || addr === '::1' || /^::ffff:127\./.test(addr);
}

// Replaces every secret in text, so failure messages can be printed.
export function redact(text, secrets) {
	let t = String(text);
	for (const s of secrets)
		t = t.split(s).join('<redacted>');
	return t;
}

export function mkdir(p) {
	mkdirSync(p, { recursive: true, mode: 0o700 });
	return p;
}
