// duetime gateway (njs, loaded by deploy/local/nginx.conf.template and deploy/compose/nginx.conf).
//
// keyHash / bearerHash: SHA-256 (hex) of the presented API key, so the keys file nginx maps to
// tenants holds hashes only. cookieHash: the same for the dashboard's session cookie, which holds
// an API key too (ADR 0029) and is a credential for the dashboard's own paths only. assertion: the signed tenant assertion the services trust instead
// of any header a client could set (duetime/tenant_assertion.py verifies it; ADR 0017):
//   v1:<tenant>:<request id>:<unix ms>:<base64url HMAC-SHA256(secret, "<the fields before>:<method>")>
// The secret comes from the environment (`env DUETIME_GATEWAY_SECRET;`); without it, or without
// a tenant, the assertion is empty and the services answer 401.

const crypto = require('crypto');

function sha256(value) {
    return value ? crypto.createHash('sha256').update(value).digest('hex') : '';
}

function keyHash(r) {
    return sha256(r.headersIn['X-API-Key'] || '');
}

function bearerHash(r) {
    const m = /^bearer\s+(\S+)\s*$/i.exec(r.headersIn['Authorization'] || '');
    return sha256(m ? m[1] : '');
}

// r.uri is normalized (percent-decoding, "..", "//" resolved): /ui/../jobs is /jobs here.
const DASHBOARD = /^\/ui(\/|$)/;

function cookieHash(r) {
    if (!DASHBOARD.test(r.uri)) {
        return '';
    }
    return sha256(r.variables.cookie_duetime_ui || '');
}

// Where the login page sends the browser back to, as one query parameter.
function dashboardNext(r) {
    return encodeURIComponent(r.variables.request_uri || '/ui/jobs');
}

function assertion(r) {
    const secret = process.env.DUETIME_GATEWAY_SECRET || '';
    const tenant = r.variables.tenant || '';
    if (!secret || !tenant) {
        return '';
    }
    const signed = ['v1', tenant, r.variables.request_id, String(Date.now())].join(':');
    const mac = crypto.createHmac('sha256', secret).update(signed + ':' + r.method);
    return signed + ':' + mac.digest('base64url');
}

export default {keyHash, bearerHash, cookieHash, dashboardNext, assertion};
