// njs for the PyPI mirror's vhost (installed by the pypi_mirror_nginx role; nginx's libnginx-mod-http-js).
//
// last_serial: X-PyPI-Last-Serial of an index page, read from the head of the page's own PEP 691 JSON
// file at request time. The engine writes every JSON page with its "meta" object first
// ({"meta":{"api-version":"1.1","_last-serial":N},...}), so the first bytes hold the serial, whatever the
// page's size (the root of a 700,000-project mirror is tens of megabytes). Nothing per project lives in the
// nginx configuration, so nginx needs no reload after a sync and the header always matches the page on disk.
//
// normalized_uri: where a request for /simple/<name>/ with a name that is not PEP 503-normalized
// redirects to (/simple/Foo__Bar/?x -> /simple/foo-bar/?x).
import fs from 'fs';

// the serial sits in the first ~50 bytes; the rest is room for a longer "meta"
const HEAD = 256;
// an index page ($uri after the index lookup): /simple/ or /simple/<name>/, with or without its index file
const PAGE = /^(\/simple\/(?:[^\/]+\/)?)(?:index\.(?:html|v1_html|v1_json))?$/;
const SERIAL = /^\s*\{\s*"meta"\s*:\s*\{[^{}]*"_last-serial"\s*:\s*(\d+)/;

function last_serial(r) {
    var page = PAGE.exec(r.variables.uri);
    if (!page) {
        return '';
    }
    var fd;
    try {
        fd = fs.openSync(r.variables.document_root + page[1] + 'index.v1_json', 'r');
    } catch (e) {
        return '';  // no such page: no header
    }
    try {
        var head = Buffer.alloc(HEAD);
        var n = fs.readSync(fd, head, 0, HEAD, 0);
        var m = SERIAL.exec(head.toString('utf8', 0, n));
        return m ? m[1] : '';  // a page without _last-serial (an upstream without serials): no header
    } catch (e) {
        r.error('pypi_mirror: cannot read ' + page[1] + 'index.v1_json: ' + e);
        return '';
    } finally {
        fs.closeSync(fd);
    }
}

function normalized_uri(r) {
    var name = r.variables.uri.replace(/^\/simple\//, '').replace(/\/$/, '');
    var args = r.variables.args;
    return '/simple/' + name.replace(/[-_.]+/g, '-').toLowerCase() + '/' + (args ? '?' + args : '');
}

export default {last_serial, normalized_uri};
