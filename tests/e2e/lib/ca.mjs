// A throwaway test CA and a server certificate for `host`, made with the
// openssl CLI. Node trusts the CA through NODE_EXTRA_CA_CERTS.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function makeCa(dir, host) {
	const f = (n) => join(dir, n);
	const ssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
	ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=KeyTrail e2e CA',
	    '-keyout', f('ca.key'), '-out', f('ca.pem'));
	ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${host}`, '-keyout', f('server.key'),
	    '-out', f('server.csr'));
	writeFileSync(f('server.ext'), `subjectAltName=DNS:${host}\nextendedKeyUsage=serverAuth\n`);
	ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
	    '-CAcreateserial', '-days', '2', '-extfile', f('server.ext'), '-out', f('server.pem'));
	return { ca: f('ca.pem'), key: f('server.key'), cert: f('server.pem') };
}
