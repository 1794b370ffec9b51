// Loopback fakes of the upstreams the MCP servers talk to. Each records what
// it received; whether a request carried the expected credential is recorded
// as a boolean, never the credential itself.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

function listen(server, port, host = '127.0.0.1') {
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => resolve(server));
	});
}

const project = {
	id: 42,
	name: 'keytrail-e2e',
	path_with_namespace: 'e2e/keytrail-e2e',
	visibility: 'private',
	web_url: 'https://gitlab.e2e.test/e2e/keytrail-e2e',
	description: 'fake project served by the KeyTrail e2e suite',
	ssh_url_to_repo: 'git@gitlab.e2e.test:e2e/keytrail-e2e.git',
	http_url_to_repo: 'https://gitlab.e2e.test/e2e/keytrail-e2e.git',
	created_at: '2026-01-01T00:00:00Z',
	last_activity_at: '2026-11-01T00:00:00Z',
	default_branch: 'main',
	namespace: { id: 7, name: 'e2e', path: 'e2e', kind: 'group', full_path: 'e2e' },
};

// A GitLab REST API (v4) that knows one project. `token` is what a request
// must present (PRIVATE-TOKEN or Authorization: Bearer) to be authorized
// (or a list of tokens it accepts).
// Below /npm/: `npm` (lib/registry.mjs) if given and it knows the package.
// `plant`: a value put in the project's description, so tool results carry it.
export function gitlabHandler(token, log, npm = null, plant = null) {
	return (req, res) => {
		const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
		const presented = req.headers['private-token'] || bearer;
		const entry = {
			method: req.method,
			path: new URL(req.url, 'http://x').pathname,
			host: req.headers.host,
			authorized: Array.isArray(token) ? token.includes(presented) : presented === token,
		};
		log.push(entry);
		req.resume();
		const send = (code, body, headers = {}) => {
			res.writeHead(code, { 'content-type': 'application/json', ...headers });
			res.end(JSON.stringify(body));
		};
		// The npm registry, for npx and for servers that check for updates
		// (npm_config_registry points here): else this version is the latest.
		if (entry.path.startsWith('/npm/')) {
			if (npm && npm(entry.path.slice(4), res))
				return;
			return send(200, { name: entry.path.slice(5), version: '0.0.0-e2e' });
		}
		if (!entry.authorized)
			return send(401, { message: '401 Unauthorized' });
		const p = entry.path.replace(/^\/api\/v4/, '');
		const shown = plant ? { ...project, description: `${project.description} ${plant}` } : project;
		if (p === '/projects')
			return send(200, [shown], { 'x-total': '1', 'x-total-pages': '1' });
		if (p === '/projects/42' || p === '/projects/e2e%2Fkeytrail-e2e')
			return send(200, project);
		if (p === '/user')
			return send(200, { id: 1, username: 'e2e', name: 'E2E' });
		if (p === '/version')
			return send(200, { version: '17.5.0', revision: 'e2e' });
		return send(404, { message: '404 Not Found' });
	};
}

export function httpServer(handler, port) {
	return listen(http.createServer(handler), port);
}

export function httpsServer(handler, port, { key, cert }) {
	return listen(https.createServer({ key, cert }, handler), port);
}

// Just enough of the PostgreSQL v3 wire protocol for node-postgres: startup,
// cleartext password authentication, and simple queries answered with one
// row. `password` is what the client must send to be let in.
export function postgresServer(password, port, log) {
	const msg = (type, body) => {
		const head = Buffer.alloc(5);
		head.write(type, 0, 'latin1');
		head.writeInt32BE(body.length + 4, 1);
		return Buffer.concat([head, body]);
	};
	const int32 = (n) => {
		const b = Buffer.alloc(4);
		b.writeInt32BE(n);
		return b;
	};
	const cstr = (s) => Buffer.from(s + '\0');
	const ready = (state) => msg('Z', Buffer.from(state));
	const complete = (tag) => msg('C', cstr(tag));
	const rowDescription = () => {
		// one text column "answer"
		const field = Buffer.concat([cstr('answer'), int32(0), Buffer.from([0, 0]), int32(25),
		                             Buffer.from([0xff, 0xff]), int32(-1), Buffer.from([0, 0])]);
		return msg('T', Buffer.concat([Buffer.from([0, 1]), field]));
	};
	const dataRow = (value) =>
		msg('D', Buffer.concat([Buffer.from([0, 1]), int32(Buffer.byteLength(value)),
		                        Buffer.from(value)]));

	const server = net.createServer((sock) => {
		let buf = Buffer.alloc(0);
		let started = false;
		let inTx = false;
		sock.on('error', () => {});
		sock.on('data', (chunk) => {
			buf = Buffer.concat([buf, chunk]);
			for (;;) {
				if (!started) {
					if (buf.length < 8)
						return;
					const len = buf.readInt32BE(0);
					if (buf.length < len)
						return;
					const code = buf.readInt32BE(4);
					buf = buf.subarray(len);
					if (code === 80877103) { // SSLRequest: no TLS here
						sock.write('N');
						continue;
					}
					started = true;
					sock.write(msg('R', int32(3))); // AuthenticationCleartextPassword
					continue;
				}
				if (buf.length < 5)
					return;
				const type = String.fromCharCode(buf[0]);
				const len = buf.readInt32BE(1);
				if (buf.length < len + 1)
					return;
				const body = buf.subarray(5, len + 1);
				buf = buf.subarray(len + 1);
				if (type === 'p') {
					const ok = body.subarray(0, body.length - 1).toString() === password;
					log.push({ message: 'password', authorized: ok });
					if (!ok) {
						sock.end(msg('E', Buffer.concat([cstr('SFATAL'), cstr('C28P01'),
						                                 cstr('Mpassword authentication failed'),
						                                 Buffer.from([0])])));
						return;
					}
					sock.write(Buffer.concat([msg('R', int32(0)),
					                          msg('S', Buffer.concat([cstr('server_version'), cstr('16.0')])),
					                          msg('K', Buffer.concat([int32(1), int32(2)])), ready('I')]));
				} else if (type === 'Q') {
					const sql = body.subarray(0, body.length - 1).toString();
					log.push({ message: 'query', sql });
					const verb = sql.trim().split(/\s+/)[0].toUpperCase();
					if (verb === 'BEGIN') {
						inTx = true;
						sock.write(Buffer.concat([complete('BEGIN'), ready('T')]));
					} else if (verb === 'ROLLBACK' || verb === 'COMMIT') {
						inTx = false;
						sock.write(Buffer.concat([complete(verb), ready('I')]));
					} else {
						sock.write(Buffer.concat([rowDescription(), dataRow('42'), complete('SELECT 1'),
						                          ready(inTx ? 'T' : 'I')]));
					}
				} else if (type === 'X') {
					sock.end();
					return;
				}
			}
		});
	});
	return listen(server, port);
}
