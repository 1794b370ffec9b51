// Fake credentials in the real formats, built fresh for every run so that
// KeyTrail's format detection (type, public prefix) is exercised and nothing
// real can leak. Each uses crypto randomness; none is ever printed.
import { randomInt } from 'node:crypto';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function pick(alphabet, n) {
	let s = '';
	for (let i = 0; i < n; i++)
		s += alphabet[randomInt(alphabet.length)];
	return s;
}

// GitLab personal access token: glpat- and 20 URL-safe characters.
export const gitlabPat = () => 'glpat-' + pick(ALNUM + '_-', 20);

// AWS access key id (AKIA + 16 base32) and its 40-character secret.
export const awsKeyId = () => 'AKIA' + pick('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16);
export const awsSecret = () => pick(ALNUM + '+/', 40);

// A database password with no URL-special characters.
export const dbPassword = () => pick(ALNUM, 24);

// OpenAI-style project key, for a .env file.
export const openaiKey = () => 'sk-proj-' + pick(ALNUM + '_-', 64) + 'T3BlbkFJ' + pick(ALNUM + '_-', 64);
