// Checks answers the API really gave against api/openapi.yaml: every
// (method, path, status) recorded in a FOG_SPEC_LOG file (api/speclog.c)
// must be an operation and status the spec documents, every JSON body must
// validate against that response's schema (a JSON body where the spec
// declares none is an error too), and a 405 must carry an Allow header
// naming the path's methods. A JSON request the server accepted (2xx) must
// validate against the operation's request body schema when it has one.
// Usage: node openapi_check.js SPEC LOG...
// (modules from tools/js, installed by tools/npm-deps.sh). Exit 0 when all
// pass, 1 when any fails, 2 on bad usage.
'use strict';
const fs = require('fs');
const YAML = require('yaml');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head'];

function main(argv) {
    if (argv.length < 2) {
        console.error('usage: openapi_check.js SPEC LOG...');
        return 2;
    }
    const spec = YAML.parse(fs.readFileSync(argv[0], 'utf8'));
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    addFormats(ajv);
    ajv.addSchema(spec, 'spec');
    const templates = Object.keys(spec.paths).map((t) => ({
        t, segs: t.split('/'),
        literal: t.split('/').filter((s) => !s.startsWith('{')).length,
    }));

    const errors = new Map(); // message -> count
    const seen = new Set();
    let n = 0, bodies = 0, requests = 0, cut = 0;
    const fail = (msg) => errors.set(msg, (errors.get(msg) || 0) + 1);

    for (const file of argv.slice(1)) {
        for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
            if (!line.trim())
                continue;
            /* A record cut short by its writer's death (a killed agent)
             * stands on a line of its own: skipped and counted. Anything
             * else that does not parse is an error. */
            let rec;
            try {
                rec = JSON.parse(line);
            } catch (e) {
                if (!line.startsWith('{"method":'))
                    throw e;
                cut++;
                continue;
            }
            n++;
            if (check(rec))
                bodies++;
        }
    }

    function matchPath(path) {
        const segs = path.split('/');
        let best = null;
        for (const c of templates) {
            if (c.segs.length !== segs.length)
                continue;
            let ok = true;
            for (let i = 0; i < segs.length && ok; i++) {
                const s = c.segs[i];
                ok = s.startsWith('{') ? segs[i] !== '' : s === segs[i];
            }
            if (ok && (!best || c.literal > best.literal))
                best = c;
        }
        return best ? best.t : null;
    }

    function deref(obj) {
        while (obj && obj.$ref) {
            const ptr = obj.$ref.replace(/^#\//, '').split('/')
                .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
            obj = ptr.reduce((o, k) => (o ? o[k] : undefined), spec);
        }
        return obj;
    }

    function schemaPointer(tmpl, method, status, resp, media) {
        // The pointer into the spec of the response's schema, through a
        // response $ref when there is one.
        const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
        let base = `#/paths/${esc(tmpl)}/${method}/responses/${status}`;
        const r = spec.paths[tmpl][method].responses[status];
        if (r.$ref)
            base = r.$ref;
        return `spec${base}/content/${esc(media)}/schema`;
    }

    // true when a JSON body was validated
    function check(rec) {
        const method = rec.method.toLowerCase();
        const path = rec.path.split('?')[0];
        const status = String(rec.status);
        const ct = (rec.content_type || '').split(';')[0].trim().toLowerCase();
        const isJson = ct === 'application/json' || ct === 'application/problem+json';
        const body = rec.body === undefined ? null : rec.body;
        const tmpl = matchPath(path);
        let parsed;
        if (isJson && body) {
            try {
                parsed = JSON.parse(body);
            } catch (e) {
                fail(`${rec.method} ${path} ${status}: body is not JSON: ${e.message}`);
                return false;
            }
        }
        if (status === '431') {
            // The server core answers it before routing (info says so).
            if (parsed !== undefined)
                validate('spec#/components/schemas/Problem', parsed, `${rec.method} ${path} 431`);
            return parsed !== undefined;
        }
        if (!tmpl || !spec.paths[tmpl][method]) {
            // Not an operation: only the router's own answers are allowed.
            const where = tmpl ? `${rec.method} ${tmpl}` : `${rec.method} (unknown path)`;
            if (!tmpl && status !== '404' && status !== '400')
                fail(`${where}: status ${status} for a path the spec lacks (${path})`);
            if (tmpl && status !== '405')
                fail(`${where}: status ${status} for a method the spec lacks`);
            if (tmpl && status === '405') {
                const want = METHODS.filter((m) => spec.paths[tmpl][m])
                    .map((m) => m.toUpperCase()).sort().join(', ');
                const got = (rec.allow || '').split(',').map((s) => s.trim())
                    .filter(Boolean).sort().join(', ');
                if (got !== want)
                    fail(`${where}: 405 Allow "${rec.allow || ''}", spec has "${want}"`);
            }
            if (parsed !== undefined)
                validate('spec#/components/schemas/Problem', parsed, `${where} ${status}`);
            return parsed !== undefined;
        }
        const op = spec.paths[tmpl][method];
        const opName = `${rec.method} ${tmpl}`;
        seen.add(opName);
        const responses = op.responses || {};
        const key = responses[status] ? status : responses.default ? 'default' : null;
        if (!key) {
            fail(`${opName}: status ${status} not documented`);
            return false;
        }
        if (rec.request !== undefined && status.startsWith('2'))
            checkRequest(tmpl, method, op, rec.request, opName);
        const resp = deref(responses[key]);
        const content = resp.content || {};
        if (status === '204' || !body)
            return false;
        if (!content[ct]) {
            fail(`${opName} ${status}: answers ${ct || 'no content type'}, ` +
                 `spec declares ${Object.keys(content).join(', ') || 'no content'}`);
            return false;
        }
        if (!isJson)
            return false;
        if (!content[ct].schema) {
            fail(`${opName} ${status}: no schema for ${ct}`);
            return false;
        }
        validate(schemaPointer(tmpl, method, key, resp, ct), parsed, `${opName} ${status}`);
        return true;
    }

    // A request body the server took, against the operation's schema.
    function checkRequest(tmpl, method, op, text, opName) {
        const rb = deref(op.requestBody);
        const media = rb && rb.content && rb.content['application/json'];
        if (!media || !media.schema || text === '')
            return;
        let req;
        try {
            req = JSON.parse(text);
        } catch (e) {
            return; // the server answered 2xx to it; not ours to judge
        }
        const esc = (x) => x.replace(/~/g, '~0').replace(/\//g, '~1');
        let base = `#/paths/${esc(tmpl)}/${method}/requestBody`;
        if (op.requestBody.$ref)
            base = op.requestBody.$ref;
        requests++;
        validate(`spec${base}/content/application~1json/schema`, req,
                 `${opName} request`);
    }

    function validate(ref, value, where) {
        const v = ajv.getSchema(ref);
        if (!v) {
            fail(`${where}: cannot resolve ${ref}`);
            return;
        }
        if (!v(value))
            for (const e of v.errors)
                fail(`${where}: ${where.endsWith(' request') ? 'request' : 'body'}${e.instancePath} ${e.message}` +
                     (e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : '') +
                     (e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''));
    }

    let ops = 0;
    for (const t of Object.keys(spec.paths))
        for (const m of METHODS)
            if (spec.paths[t][m])
                ops++;
    console.log(`${n} answers checked (${bodies} JSON bodies validated, ` +
                `${requests} accepted requests), ` +
                `${seen.size} of ${ops} operations seen` +
                (cut ? `; ${cut} records cut short by a killed writer skipped` : ''));
    if (process.env.FOG_SPEC_UNSEEN)
        for (const t of Object.keys(spec.paths))
            for (const m of METHODS)
                if (spec.paths[t][m] && !seen.has(`${m.toUpperCase()} ${t}`))
                    console.log(`  not seen: ${m.toUpperCase()} ${t}`);
    for (const [msg, count] of errors)
        console.log(`FAIL ${msg}${count > 1 ? ` (x${count})` : ''}`);
    console.log(errors.size ? `${errors.size} distinct failures` : 'all answers match the spec');
    return errors.size ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
