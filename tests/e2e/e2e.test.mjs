// KeyTrail end to end: real MCP servers from npm, driven by the MCP SDK
// client, their upstreams faked on loopback inside a network namespace that
// has nothing else, and `keytrail run` watching from the host.
//
// run.sh installs the pinned packages next to a copy of this file in the
// build dir and runs `KEYTRAIL_BINARY=... node --test e2e.test.mjs` there.
// E2E_KEEP=1 keeps the agents' outputs (under $TMPDIR/keytrail-e2e-*).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Agent, isLoopback, KEYTRAIL, mkdir, redact } from './lib/agent.mjs';
import { makeCa } from './lib/ca.mjs';
import * as tokens from './lib/tokens.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const bin = (name) => join(HERE, 'node_modules', '.bin', name);
const WORK = mkdtempSync(join(tmpdir(), 'keytrail-e2e-'));
after(() => {
	if (!process.env.E2E_KEEP)
		rmSync(WORK, { recursive: true, force: true });
});

// Runs scenario.mjs in a new network + mount namespace (only loopback).
function scenario(spec, secrets) {
	return new Promise((resolve, reject) => {
		const p = spawn('unshare', ['--net', '--mount', '--propagation', 'private', process.execPath,
		                            join(HERE, 'scenario.mjs')],
		                { stdio: ['pipe', 'pipe', 'pipe'] });
		let out = '', err = '';
		p.stdout.on('data', (d) => (out += d));
		p.stderr.on('data', (d) => (err += d));
		const timer = setTimeout(() => p.kill('SIGKILL'), 180000);
		p.on('exit', (code) => {
			clearTimeout(timer);
			if (code !== 0)
				return reject(new Error(`scenario exited ${code}: ${redact(err, secrets)}`));
			const r = JSON.parse(out);
			for (const s of r.servers)
				if (s.error || !s.result || s.result.isError)
					return reject(new Error(`${s.name}: ${redact(JSON.stringify(s), secrets)}`));
			resolve(r);
		});
		p.stdin.end(JSON.stringify(spec));
	});
}

// The agent's fingerprint of a value, through `keytrail fingerprint`.
function fingerprint(agent, value) {
	const r = spawnSync(KEYTRAIL, ['fingerprint', '--state-dir', agent.state], { input: value,
	                                                                               encoding: 'utf8' });
	assert.equal(r.status, 0, r.stderr);
	return r.stdout.trim();
}

// What every scenario must hold once the agent has stopped.
function commonChecks(agent, secrets, { connects: mustConnect = true } = {}) {
	const recs = agent.records(); // throws on a line that is not JSON
	assert.ok(recs.some((r) => r.type === 'ready'));
	// The probes saw connects, and every one of them went to loopback.
	const connects = recs.filter((r) => r.type === 'connect' && r.family !== 'unix' && r.addr);
	if (mustConnect)
		assert.ok(connects.length > 0, 'no connect observed');
	for (const c of connects)
		assert.ok(isLoopback(c.addr), `connect to ${c.addr}:${c.port} by ${c.comm}`);
	for (const u of recs.filter((r) => r.type === 'secret_use'))
		assert.ok(isLoopback(u.upstream.addr), `secret_use toward ${u.upstream.addr}`);
	// No secret value in anything the agent wrote: output, stderr, ledger,
	// journal (inflated), status, recording.
	const files = agent.writtenFiles();
	assert.ok(files.some((f) => f.path.includes('journal')), 'no journal written');
	assert.ok(files.some((f) => f.path.endsWith('ledger.db')), 'no ledger written');
	for (const f of [...files, { path: 'stderr', data: Buffer.from(agent.stderr) }])
		for (const s of secrets)
			assert.ok(!f.data.includes(s), `a planted secret appears in ${f.path}`);
	return recs;
}

const byType = (recs, t) => recs.filter((r) => r.type === t);

// Starts an agent, runs the scenario under it, waits until `until` matches a
// record, or `until.all` holds of all records (or 15 s), stops the agent and
// runs the common checks.
async function underAgent(name, spec, secrets, until, { config = '', connects = true } = {}) {
	const dir = mkdir(join(WORK, name));
	const agent = new Agent(dir, config);
	let result;
	try {
		await agent.ready();
		result = await scenario(spec, secrets);
		if (until.all)
			await agent.waitForAll(until.all);
		else
			await agent.waitFor(until);
	} finally {
		await agent.stop();
	}
	const recs = commonChecks(agent, secrets, { connects });
	return { agent, recs, result, dir };
}

const gitlabServer = (name, command, token, apiUrl, extraEnv = {}) => ({
	name,
	command,
	args: [],
	env: { GITLAB_PERSONAL_ACCESS_TOKEN: token, GITLAB_API_URL: apiUrl, ...extraEnv },
	tool: 'search_repositories',
	arguments: { search: 'keytrail' },
	expect: ['keytrail-e2e'],
});

const usesOf = (recs, fp) => byType(recs, 'secret_use').filter((u) => u.secret?.fingerprint === fp);

test('server-gitlab: token from env used toward the loopback GitLab API', async () => {
	const token = tokens.gitlabPat();
	const { agent, recs, result } = await underAgent('gitlab', {
		gitlab: { token },
		servers: [gitlabServer('server-gitlab', bin('mcp-server-gitlab'), token,
		                       'http://127.0.0.1:8080/api/v4')],
	}, [token], (x) => x.type === 'secret_use');

	const s = result.servers[0];
	assert.ok(s.tools.includes('search_repositories'));
	assert.deepEqual(s.result.contains, [true]);
	assert.ok(result.gitlab.some((q) => q.authorized && q.path === '/api/v4/projects'),
	          JSON.stringify(result.gitlab));

	const fp = fingerprint(agent, token);
	const secret = byType(recs, 'secret').find((x) => x.secret.fingerprint === fp);
	assert.ok(secret, 'no secret record for the token');
	assert.equal(secret.secret.type, 'gitlab_pat');
	assert.equal(secret.secret.source, 'env');
	assert.equal(secret.secret.env, 'GITLAB_PERSONAL_ACCESS_TOKEN');
	const uses = usesOf(recs, fp);
	assert.ok(uses.length >= 1, 'no secret_use for the token');
	const u = uses[0];
	assert.equal(u.pairing, 'sole_secret');
	assert.equal(u.secret.type, 'gitlab_pat');
	// The bin (mcp-server-gitlab) is named by its package, as npx or node would be.
	assert.equal(u.identity.selectors['mcp.server'], '@modelcontextprotocol/server-gitlab');
	assert.match(u.identity.id,
	             /^spiffe:\/\/keytrail\.local\/.*\/modelcontextprotocol\.server-gitlab\//);
	assert.equal(u.process.pid, s.pid);
	assert.equal(u.upstream.addr, '127.0.0.1');
	assert.equal(u.upstream.port, 8080);
	assert.equal(u.upstream.http_host, '127.0.0.1:8080');
});

test('server-filesystem: reads a fake .aws/credentials and .env in its allowed directory', async () => {
	const id = tokens.awsKeyId(), key = tokens.awsSecret(), openai = tokens.openaiKey();
	const root = mkdir(join(WORK, 'fs-project'));
	mkdir(join(root, '.aws'));
	const creds = join(root, '.aws', 'credentials'), env = join(root, '.env');
	writeFileSync(creds, `# e2e-marker-aws\n[default]\naws_access_key_id = ${id}\n` +
	                     `aws_secret_access_key = ${key}\nregion = eu-west-1\n`, { mode: 0o600 });
	writeFileSync(env, `# e2e-marker-env\nOPENAI_API_KEY=${openai}\nLOG_LEVEL=debug\n`, { mode: 0o600 });
	// The access key id is the public half (records show it whole, so it can
	// be looked up in CloudTrail); the secret key and the API key must not
	// appear anywhere.
	const secrets = [key, openai];
	const { agent, recs, result } = await underAgent('filesystem', {
		servers: [{
			name: 'server-filesystem',
			command: bin('mcp-server-filesystem'),
			args: [root],
			tool: 'read_multiple_files',
			arguments: { paths: [creds, env] },
			expect: ['e2e-marker-aws', 'e2e-marker-env'],
		}],
	}, secrets, (x) => x.type === 'secret' && x.secret.path === env, { connects: false });

	assert.deepEqual(result.servers[0].result.contains, [true, true]);
	const files = byType(recs, 'secret').filter((x) => x.secret.source === 'file');
	const want = [[id, 'aws_access_key_id', creds], [key, 'aws_secret_access_key', creds],
	              [openai, 'openai_api_key', env]];
	for (const [value, type, path] of want) {
		const fp = fingerprint(agent, value);
		const r = files.find((x) => x.secret.fingerprint === fp);
		assert.ok(r, `no secret record for the ${type} in ${path}`);
		assert.equal(r.secret.type, type);
		assert.equal(r.secret.path, path);
		assert.equal(r.mcp_server, '@modelcontextprotocol/server-filesystem');
		assert.equal(r.pid, result.servers[0].pid);
	}
	// The key id's kind, not the id itself.
	assert.equal(files.find((x) => x.secret.type === 'aws_access_key_id').secret.prefix, 'AKIA');
	assert.ok(!JSON.stringify(recs).includes(id), 'the AWS key id is in a record');
	// The server opened both files (the raw observations say so, too).
	const opens = byType(recs, 'open').map((o) => o.path);
	assert.ok(opens.includes(creds) && opens.includes(env), JSON.stringify(opens));
});

test('server-postgres: password in the connection URL (argv) is hard-coded and used', async () => {
	const password = tokens.dbPassword();
	const url = `postgresql://keytrail:${password}@127.0.0.1:5432/e2e`;
	const { agent, recs, result } = await underAgent('postgres', {
		postgres: { password },
		servers: [{
			name: 'server-postgres',
			command: bin('mcp-server-postgres'),
			args: [url],
			tool: 'query',
			arguments: { sql: 'SELECT 42 AS answer' },
			expect: ['42'],
		}],
	}, [password], (x) => x.type === 'secret_use');

	assert.deepEqual(result.servers[0].result.contains, [true]);
	assert.ok(result.postgres.some((m) => m.message === 'password' && m.authorized),
	          JSON.stringify(result.postgres));
	const argv = byType(recs, 'secret').filter((x) => x.secret.source === 'argv');
	assert.equal(argv.length >= 1, true, 'no argv secret');
	const fp = argv[0].secret.fingerprint;
	assert.equal(argv[0].secret.type, 'database_url');
	assert.equal(argv[0].mcp_server, '@modelcontextprotocol/server-postgres');
	assert.equal(argv[0].hardcoded, true);
	const hard = byType(recs, 'alert').filter((a) => a.rule === 'hardcoded_secret' &&
	                                                 a.secret.fingerprint === fp);
	assert.equal(hard.length, 1, 'one hardcoded_secret alert');
	assert.equal(hard[0].identity.selectors['mcp.server'], '@modelcontextprotocol/server-postgres');
	const uses = usesOf(recs, fp);
	assert.ok(uses.length >= 1, 'no secret_use toward the database');
	assert.equal(uses[0].upstream.port, 5432);
});

test('two different GitLab MCP servers with the same token: shared_credential names both', async () => {
	const token = tokens.gitlabPat();
	const api = 'http://127.0.0.1:8080/api/v4';
	const { agent, recs, result } = await underAgent('shared', {
		gitlab: { token },
		servers: [gitlabServer('server-gitlab', bin('mcp-server-gitlab'), token, api),
		          // It checks the npm registry for a newer version of itself: the
		          // registry is the loopback fake too.
		          gitlabServer('zereight-mcp-gitlab', bin('mcp-gitlab'), token, api,
		                       { npm_config_registry: 'http://127.0.0.1:8080/npm' })],
	}, [token], (x) => x.type === 'alert' && x.rule === 'shared_credential');

	for (const s of result.servers)
		assert.deepEqual(s.result.contains, [true], s.name);
	const fp = fingerprint(agent, token);
	const shared = byType(recs, 'alert').filter((a) => a.rule === 'shared_credential');
	assert.equal(shared.length, 1);
	assert.equal(shared[0].secret.fingerprint, fp);
	assert.equal(shared[0].secret.type, 'gitlab_pat');
	const ids = shared[0].identities.map((i) => i.id).sort();
	assert.equal(ids.length, 2);
	assert.match(ids[0], /\/modelcontextprotocol\.server-gitlab\//);
	assert.match(ids[1], /\/zereight\.mcp-gitlab\//);
	const users = new Set(usesOf(recs, fp).map((u) => u.identity.id));
	assert.deepEqual([...users].sort(), ids);
});

test('HTTPS upstream by host name: secret_use carries the SNI', async () => {
	const token = tokens.gitlabPat();
	const host = 'gitlab.e2e.test';
	const pki = makeCa(mkdir(join(WORK, 'pki')), host);
	const { agent, recs, result } = await underAgent('https', {
		hosts: `127.0.0.1 localhost\n127.0.0.1 ${host}\n`,
		tls: { key: pki.key, cert: pki.cert },
		gitlab: { token },
		servers: [gitlabServer('server-gitlab', bin('mcp-server-gitlab'), token,
		                       `https://${host}/api/v4`, { NODE_EXTRA_CA_CERTS: pki.ca })],
	}, [token], (x) => x.type === 'secret_use');

	assert.ok(result.gitlab.some((q) => q.authorized && q.host === host));
	const fp = fingerprint(agent, token);
	const uses = usesOf(recs, fp);
	assert.ok(uses.length >= 1, 'no secret_use');
	assert.equal(uses[0].upstream.sni, host);
	assert.equal(uses[0].upstream.port, 443);
	assert.equal(uses[0].upstream.addr, '127.0.0.1');
	assert.match(uses[0].summary, new RegExp(`toward ${host.replace(/\./g, '\\.')}:443`));
	// The raw connect said so first.
	assert.ok(byType(recs, 'connect').some((c) => c.sni === host && c.port === 443));
});

test('one package, launched as client configs do (npx -y, a shell wrapper): one workload name, nothing shared', async () => {
	const token = tokens.gitlabPat();
	const api = 'http://127.0.0.1:8080/api/v4';
	const npx = join(dirname(process.execPath), 'npx');
	// npx installs from the loopback registry into a cache of its own.
	const npmEnv = {
		npm_config_registry: 'http://127.0.0.1:8080/npm',
		npm_config_cache: mkdir(join(WORK, 'npx-cache')),
		npm_config_update_notifier: 'false',
		npm_config_audit: 'false',
		npm_config_fund: 'false',
	};
	// A wrapper as people write them: it sets things up and runs the
	// server as its child.
	const wrapper = join(mkdir(join(WORK, 'wrapper')), 'gitlab-mcp.sh');
	writeFileSync(wrapper, '#!/bin/sh\nset -e\ncd "$(dirname "$0")"\nnode ' +
	                       join(HERE, 'node_modules/@modelcontextprotocol/server-gitlab/dist/index.js') +
	                       ' "$@"\n', { mode: 0o755 });
	const { agent, recs, result } = await underAgent('launchers', {
		gitlab: { token },
		registry: ['@modelcontextprotocol/server-gitlab'],
		servers: [{ ...gitlabServer('npx', npx, token, api, npmEnv),
		            args: ['-y', '@modelcontextprotocol/server-gitlab'], cwd: WORK },
		          gitlabServer('wrapper', wrapper, token, api)],
	}, [token], { all: (recs) => byType(recs, 'secret_use').length >= 2 });

	for (const s of result.servers)
		assert.deepEqual(s.result.contains, [true], s.name);
	// npx fetched the package from the fake registry (not a local copy).
	assert.ok(result.gitlab.some((q) => q.path.startsWith('/npm/-/tarball/')), 'npx did not install');
	const fp = fingerprint(agent, token);
	// Each launch's first holder reports it (npm, the wrapper's sh); the
	// children that inherit it are held, not sighted again. All are the one
	// package's workload: one name, one identity.
	const holders = byType(recs, 'secret').filter((x) => x.secret.fingerprint === fp);
	assert.ok(holders.length >= 2, JSON.stringify(holders.map((h) => h.comm)));
	for (const h of holders)
		assert.equal(h.identity.selectors['mcp.server'], '@modelcontextprotocol/server-gitlab',
		             `${h.comm} (pid ${h.pid})`);
	assert.equal(new Set(holders.map((h) => h.identity.id)).size, 1);
	const uses = usesOf(recs, fp);
	assert.ok(uses.length >= 2, 'both launches used the token');
	// Both launches used it, from their own trees.
	const roots = result.servers.map((s) => s.pid);
	for (const root of roots)
		assert.ok(uses.some((u) => u.process.pid === root ||
		                           (u.process.ancestry || []).some((a) => a.pid === root)),
		          `no use under pid ${root}: ${JSON.stringify(uses.map((u) => u.process))}`);
	// npx's own fetches from the registry are not uses of the token.
	assert.ok(!uses.some((u) => u.process.pid === result.servers[0].pid), 'npx counted as a use');
	// Two launches of one package with one token: not sharing, and one
	// finding for the unowned credential, whatever its helpers did.
	const alerts = byType(recs, 'alert').filter((a) => a.secret?.fingerprint === fp);
	assert.deepEqual(alerts.map((a) => a.rule), ['unowned_secret'], JSON.stringify(alerts));
});

// MCP tool calls (issue 18): the stdio JSON-RPC of the server is read, and
// the uses made while a call is in flight name it.
test('server-gitlab: the secret_use names the tool call, and the tool_call record the credential', async () => {
	const token = tokens.gitlabPat();
	// Planted in a tool argument and in the tool's result: neither may
	// appear in anything the agent writes (commonChecks searches it all).
	const inArgument = 'ghp_' + tokens.dbPassword() + 'ARGplant';
	const inResult = 'glpat-' + tokens.dbPassword() + 'RESplant';
	const server = gitlabServer('server-gitlab', bin('mcp-server-gitlab'), token,
	                            'http://127.0.0.1:8080/api/v4');
	server.arguments = { search: `keytrail ${inArgument}` };
	const { agent, recs, result } = await underAgent('gitlab-tool-call', {
		gitlab: { token, plant: inResult },
		servers: [server],
	}, [token, inArgument, inResult], (x) => x.type === 'tool_call', {
		config: '  tool_call_linger: 1s\n',
	});

	const s = result.servers[0];
	assert.ok(s.result.size > 0);
	const fp = fingerprint(agent, token);
	const uses = usesOf(recs, fp).filter((u) => u.process.pid === s.pid);
	assert.ok(uses.length >= 1, 'no secret_use for the token');
	const called = uses.filter((u) => u.mcp?.tool_call);
	assert.ok(called.length >= 1, JSON.stringify(uses.map((u) => u.mcp)));
	assert.equal(called[0].mcp.tool_call.tool, 'search_repositories');
	assert.equal(called[0].mcp.tool_call.client, 'keytrail-e2e');
	const calls = byType(recs, 'tool_call').filter((c) => c.pid === s.pid || c.process?.pid === s.pid);
	const call = calls.find((c) => c.tool === 'search_repositories');
	assert.ok(call, JSON.stringify(byType(recs, 'tool_call')));
	assert.equal(call.id, called[0].mcp.tool_call.id);
	assert.equal(call.outcome, 'ok');
	assert.equal(call.client.name, 'keytrail-e2e');
	assert.equal(call.mcp_server, '@modelcontextprotocol/server-gitlab');
	assert.ok(call.duration_ms >= 0);
	assert.ok(call.upstreams.includes('127.0.0.1:8080'), JSON.stringify(call.upstreams));
	assert.ok(call.credentials.some((c) => c.fingerprint === fp && c.upstream === '127.0.0.1:8080'),
	          JSON.stringify(call.credentials));
	// The connect observation names the call too.
	const connects = byType(recs, 'connect').filter((c) => c.pid === s.pid && c.port === 8080);
	assert.ok(connects.some((c) => c.mcp?.tool_call?.tool === 'search_repositories'));
	// The calls before it (initialize, tools/list) were not tool calls.
	assert.equal(calls.length, 1, JSON.stringify(calls));
});

test('two servers called at once: each tool call has its own upstream uses and credential', async () => {
	const a = tokens.gitlabPat(), b = tokens.gitlabPat();
	const api = 'http://127.0.0.1:8080/api/v4';
	const one = gitlabServer('server-gitlab', bin('mcp-server-gitlab'), a, api);
	const two = gitlabServer('zereight-mcp-gitlab', bin('mcp-gitlab'), b, api,
	                         { npm_config_registry: 'http://127.0.0.1:8080/npm' });
	const { agent, recs, result } = await underAgent('gitlab-concurrent', {
		gitlab: { token: [a, b] },
		concurrent: true,
		servers: [one, two],
	}, [a, b], { all: (rs) => byType(rs, 'tool_call').length >= 2 }, {
		config: '  tool_call_linger: 1s\n',
	});
	const fpA = fingerprint(agent, a), fpB = fingerprint(agent, b);
	const pids = Object.fromEntries(result.servers.map((s) => [s.name, s.pid]));
	const calls = byType(recs, 'tool_call');
	const callOf = (name) => calls.find((c) => c.process?.pid === pids[name]);
	const ca = callOf('server-gitlab'), cb = callOf('zereight-mcp-gitlab');
	assert.ok(ca && cb, JSON.stringify(calls));
	assert.deepEqual(ca.credentials.map((c) => c.fingerprint), [fpA]);
	assert.deepEqual(cb.credentials.map((c) => c.fingerprint), [fpB]);
	for (const u of byType(recs, 'secret_use').filter((u) => u.mcp?.tool_call)) {
		const mine = u.secret?.fingerprint === fpA ? ca : cb;
		assert.equal(u.mcp.tool_call.id, mine.id);
		assert.equal(u.mcp.tool_call.tool, mine.tool);
		assert.equal(u.mcp.tool_call.started, mine.started);
	}
});
