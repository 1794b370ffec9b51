#!/bin/sh
# keytrail scan's SARIF validated against the OASIS SARIF 2.1.0 JSON schema
# (the copy @microsoft/jest-sarif ships) with ajv. Both come from the npm
# registry into the build directory, once; nothing is committed.
#   sarif_schema.sh KEYTRAIL_BINARY WORK_DIR
set -eu
keytrail=$1
work=$2
mkdir -p "$work/fixture"
cd "$work"
if [ ! -f node_modules/ajv-draft-04/package.json ] || [ ! -f node_modules/@microsoft/jest-sarif/package.json ]; then
	npm install --no-audit --no-fund --no-save --silent \
		ajv@8.17.1 ajv-draft-04@1.0.0 ajv-formats@3.0.1 @microsoft/jest-sarif@1.0.0-beta.0 >/dev/null
fi
schema=$(find node_modules/@microsoft/jest-sarif -name 'sarif-2.1.0*.json' | head -n 1)
[ -n "$schema" ] || { echo "no SARIF schema in @microsoft/jest-sarif"; exit 1; }

# A token in a valid format, made here; a credential file reference; a
# malformed config (a tool execution notification).
token="ghp_$(printf 'keytrail-sarif-test-%s' "$$" | sha256sum | tr -dc 'a-zA-Z0-9' | head -c 36)"
cat > fixture/mcp.json <<JSON
{
  // comments and trailing commas, as VS Code allows
  "mcpServers": {
    "github": {"command": "npx", "args": ["-y", "server-github"], "env": {"GITHUB_TOKEN": "$token"},},
    "kube": {"command": "k8s-mcp", "args": ["--kubeconfig", "/home/u/.kube/config"]},
  },
}
JSON
printf '{"mcpServers": {' > fixture/broken.json

rc=0
"$keytrail" scan -f sarif fixture/mcp.json fixture/broken.json > out.sarif || rc=$?
[ "$rc" -eq 1 ] || { echo "scan exit code $rc, want 1 (findings)"; exit 1; }
if grep -q "$token" out.sarif; then echo "the token is in the SARIF output"; exit 1; fi

cat > validate.cjs <<'JS'
const fs = require('fs');
const Ajv = require('ajv-draft-04'); // the SARIF schema is JSON Schema draft-04
const addFormats = require('ajv-formats');
const [schemaPath, file] = process.argv.slice(2);
const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
// The schema's language pattern has a stray ']': valid only without the u flag.
const ajv = new Ajv({strict: false, allErrors: true, unicodeRegExp: false});
addFormats(ajv);
const validate = ajv.compile(schema);
const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
if (!validate(doc)) {
  console.error(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
const results = doc.runs[0].results.length;
const notes = (doc.runs[0].invocations[0].toolExecutionNotifications || []).length;
if (results !== 2 || notes !== 1) {
  console.error(`want 2 results and 1 notification, got ${results} and ${notes}`);
  process.exit(1);
}
console.log(`valid SARIF 2.1.0 (${schemaPath}): ${results} results, ${notes} notification`);
JS
node validate.cjs "$schema" out.sarif
