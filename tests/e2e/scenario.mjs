// One e2e scenario, run inside a fresh network namespace that has only
// loopback (`unshare --net --mount`): starts the loopback fakes, then drives
// each MCP server with the MCP SDK client over stdio (initialize, tools/list,
// one tools/call) and prints what happened as one JSON object on stdout.
//
// The spec comes on stdin (it holds the fake credentials, which must not
// appear in any argv or file the agent could report):
//   { hosts, tls: {key, cert}, gitlab: {token, plant}, postgres: {password}, concurrent,
//     registry: [package] (serve them as installed here at 127.0.0.1:8080/npm),
//     servers: [{ name, command, args, env, cwd, tool, arguments, expect: [str] }] }
// Output never includes a credential: requests are logged with a boolean
// `authorized`, and tool results as their size and which `expect` strings
// they contain.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { gitlabHandler, httpServer, httpsServer, postgresServer } from './lib/fakes.mjs';
import { registry } from './lib/registry.mjs';

const spec = JSON.parse(readFileSync(0, 'utf8'));
const out = { servers: [], gitlab: [], postgres: [] };

execFileSync('ip', ['link', 'set', 'lo', 'up']);
if (spec.hosts) {
	// Only this mount namespace sees it.
	const hosts = join(tmpdir(), `keytrail-e2e-hosts-${process.pid}`);
	writeFileSync(hosts, spec.hosts);
	execFileSync('mount', ['--bind', hosts, '/etc/hosts']);
}

const listeners = [];
if (spec.gitlab) {
	const npm = spec.registry
		? registry(dirname(fileURLToPath(import.meta.url)), 'http://127.0.0.1:8080/npm',
		           spec.registry)
		: null;
	const handler = gitlabHandler(spec.gitlab.token, out.gitlab, npm, spec.gitlab.plant);
	listeners.push(await httpServer(handler, 8080));
	if (spec.tls)
		listeners.push(await httpsServer(handler, 443, {
			key: readFileSync(spec.tls.key),
			cert: readFileSync(spec.tls.cert),
		}));
}
if (spec.postgres)
	listeners.push(await postgresServer(spec.postgres.password, 5432, out.postgres));

// Each server in turn, or (spec.concurrent) all at once: their tool calls
// then overlap.
const run = async (s) => {
	const entry = { name: s.name };
	out.servers.push(entry);
	const transport = new StdioClientTransport({
		command: s.command,
		args: s.args,
		env: s.env,
		cwd: s.cwd,
		stderr: 'pipe',
	});
	let stderr = '';
	transport.stderr?.on('data', (d) => (stderr += d));
	const client = new Client({ name: 'keytrail-e2e', version: '1.0.0' });
	try {
		await client.connect(transport);
		entry.pid = transport.pid;
		entry.server = client.getServerVersion();
		entry.tools = (await client.listTools()).tools.map((t) => t.name);
		const result = await client.callTool({ name: s.tool, arguments: s.arguments });
		const text = (result.content || []).map((c) => c.text || '').join('\n');
		entry.result = {
			isError: !!result.isError,
			size: text.length,
			contains: (s.expect || []).map((e) => text.includes(e)),
		};
	} catch (e) {
		entry.error = String(e?.message || e);
	} finally {
		await client.close().catch(() => {});
	}
	entry.stderrBytes = stderr.length;
	if (entry.error || entry.result?.isError)
		entry.stderrTail = stderr.slice(-2000); // the caller redacts secrets
};
if (spec.concurrent)
	await Promise.all(spec.servers.map(run));
else
	for (const s of spec.servers)
		await run(s);

for (const l of listeners)
	l.close();
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
