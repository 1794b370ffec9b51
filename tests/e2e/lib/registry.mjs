// A loopback npm registry that serves the packages this suite installed
// (package-lock.json, node_modules), so `npx -y PACKAGE` resolves, installs
// and runs a server the way a client config launches it, with no network.
// Tarballs are packed from the installed directories on first request.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// name -> version -> { dir, manifest fields npm resolves with }, for the
// packages `roots` depend on as installed here (node's resolution through
// node_modules): npm then picks what this suite tested, not merely the
// newest version some other package here needed.
function packagesOf(root, roots) {
	const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
	const entries = lock.packages || {};
	const resolve = (from, dep) => {
		for (let at = from; ; at = at.slice(0, at.lastIndexOf('/node_modules/'))) {
			const key = `${at}/node_modules/${dep}`;
			if (entries[key])
				return key;
			if (!at.includes('/node_modules/'))
				return entries[`node_modules/${dep}`] ? `node_modules/${dep}` : null;
		}
	};
	const byName = new Map();
	const todo = roots.map((r) => `node_modules/${r}`);
	const seen = new Set();
	while (todo.length) {
		const key = todo.pop();
		const entry = entries[key];
		if (seen.has(key) || !entry || entry.link || !entry.version)
			continue;
		seen.add(key);
		const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
		if (!byName.has(name))
			byName.set(name, new Map());
		byName.get(name).set(entry.version, { dir: join(root, key), entry });
		for (const dep of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
			const found = resolve(key, dep);
			if (found)
				todo.push(found);
		}
	}
	return byName;
}

const semverKey = (v) => v.split(/[.+-]/).map((x) => (/^\d+$/.test(x) ? x.padStart(8, '0') : x)).join('.');

// Serves `roots` (package names) and what they depend on.
export function registry(root, base, roots) {
	const packages = packagesOf(root, roots);
	const tarballs = new Map(); // "name@version" -> Buffer

	const tarball = (name, version) => {
		const key = `${name}@${version}`;
		if (!tarballs.has(key)) {
			const { dir } = packages.get(name).get(version);
			// npm strips the first path component, whatever it is.
			tarballs.set(key, execFileSync('tar', ['-czf', '-', '--exclude=./node_modules', '-C', dir, '.'],
			                               { maxBuffer: 256 << 20 }));
		}
		return tarballs.get(key);
	};

	const packument = (name) => {
		const versions = {};
		for (const [version, { entry }] of packages.get(name)) {
			const data = tarball(name, version);
			versions[version] = {
				name,
				version,
				dependencies: entry.dependencies || {},
				optionalDependencies: entry.optionalDependencies || {},
				peerDependencies: entry.peerDependencies || {},
				peerDependenciesMeta: entry.peerDependenciesMeta || {},
				bin: entry.bin || {},
				engines: entry.engines || {},
				dist: {
					tarball: `${base}/-/tarball/${encodeURIComponent(name)}/${version}.tgz`,
					integrity: 'sha512-' + createHash('sha512').update(data).digest('base64'),
				},
			};
		}
		const latest = [...packages.get(name).keys()].sort((a, b) => (semverKey(a) < semverKey(b) ? -1 : 1)).pop();
		return { name, 'dist-tags': { latest }, versions };
	};

	// Handles `path` (below base) if it is the registry's; false if not.
	return (path, res) => {
		const tgz = path.match(/^\/-\/tarball\/([^/]+)\/([^/]+)\.tgz$/);
		if (tgz) {
			const name = decodeURIComponent(tgz[1]);
			if (!packages.get(name)?.has(tgz[2]))
				return false;
			res.writeHead(200, { 'content-type': 'application/octet-stream' });
			res.end(tarball(name, tgz[2]));
			return true;
		}
		const name = decodeURIComponent(path.slice(1));
		if (!packages.has(name))
			return false;
		res.writeHead(200, { 'content-type': 'application/json' });
		res.end(JSON.stringify(packument(name)));
		return true;
	};
}
