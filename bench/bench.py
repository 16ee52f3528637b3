#!/usr/bin/env python3
"""pacsgate side by side with nginx, HAProxy and stunnel on one machine, in one run.

Python 3 standard library only; bench/run.sh installs the peers and calls this.
Every terminator gets the same ECDSA P-256 certificate, TLS 1.3, one CPU (the
"server" core, via taskset) and one worker (nginx worker_processes 1, HAProxy
nbthread 1, pacsgate's current-thread runtime); load generators, the HTTP backend
(a plain nginx) and the DICOM SCP (storescp --ignore) run on the other core.

Measurements, each repeated --runs times (the table shows medians):
  keep-alive   wrk -t1 -c16 on a 1 KiB file: req/s and terminator CPU per request
  handshake    wrk with "Connection: close" and a shim that drops the TLS session
               at each reconnect (wrk would otherwise resume it), so every request
               is a full TLS 1.3 handshake: terminator CPU per connection
  download     curl of a 64 MiB file over one connection: MB/s and terminator CPU
  dicom        storescu +tla of 200 x 512 KiB files: MB/s, terminator CPU;
               "plain" is storescu straight to storescp without TLS
CPU is read from /proc/<pid>/stat (utime + stime) of every process in the
terminator's process group, so nginx's and HAProxy's workers count too.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf('SC_CLK_TCK')
SERVER_CPU, CLIENT_CPU = '1', '0'
# dcmtk leaves Nagle on unless told; with it, each C-STORE waits ~40 ms for a delayed ACK.
NODELAY = {'TCP_NODELAY': '1'}
STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'
os.environ['PATH'] = os.environ.get('PATH', '') + ':/usr/sbin:/sbin'  # nginx, haproxy

SHIM_C = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
/* wrk reuses its SSL object through SSL_clear, which keeps the session: drop it so
   the next connect is a full handshake. */
typedef struct ssl_st SSL;
int SSL_clear(SSL *s) {
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, void *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_DEFAULT, "SSL_set_session");
    }
    if (set_session) set_session(s, NULL);
    return real_clear(s);
}
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f'bench: {" ".join(proc.args[3:])} exited early (status {proc.returncode})')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port, not synchronising on time
    sys.exit(f'bench: nothing listens on 127.0.0.1:{port} after {timeout}s')


def group_cpu(pgid):
    """CPU seconds (user + system) of every live process in process group pgid."""
    total = 0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), after pid and comm
            total += int(fields[11]) + int(fields[12])
    return total / TICK


class Servers:
    def __init__(self, workdir):
        self.workdir, self.procs = workdir, []

    def start(self, name, argv, cpu, env=None):
        log = open(os.path.join(self.workdir, f'{name}.log'), 'wb')
        proc = subprocess.Popen(['taskset', '-c', cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def make_pki(t):
    cert, key = f'{t}/cert.pem', f'{t}/key.pem'
    run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
         '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
         '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'])
    with open(f'{t}/cert_key.pem', 'w') as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, f'{t}/cert_key.pem'


def make_dicom(path, pixel_bytes):
    """A minimal Secondary Capture file (PS3.10 7.1): preamble, DICM, explicit VR little endian."""
    def el(group, elem, vr, value):
        if vr in (b'OB', b'OW', b'UN'):
            return struct.pack('<HH2sHI', group, elem, vr, 0, len(value)) + value
        return struct.pack('<HH2sH', group, elem, vr, len(value)) + value

    def ui(s):
        b = s.encode()
        return b + b'\0' * (len(b) % 2)
    sop_class, sop_inst, ts = '1.2.840.10008.5.1.4.1.1.7', '1.2.826.0.1.3680043.8.498.1', '1.2.840.10008.1.2.1'
    meta = (el(2, 1, b'OB', b'\0\1') + el(2, 2, b'UI', ui(sop_class)) + el(2, 3, b'UI', ui(sop_inst))
            + el(2, 0x10, b'UI', ui(ts)) + el(2, 0x12, b'UI', ui('1.2.826.0.1.3680043.8.498')))
    side = int((pixel_bytes // 2) ** 0.5)
    data = (el(8, 0x16, b'UI', ui(sop_class)) + el(8, 0x18, b'UI', ui(sop_inst))
            + el(0x10, 0x10, b'PN', b'BENCH^PATIENT ') + el(0x20, 0xD, b'UI', ui('1.2.3.4'))
            + el(0x20, 0xE, b'UI', ui('1.2.3.4.5')) + el(0x28, 2, b'US', struct.pack('<H', 1))
            + el(0x28, 4, b'CS', b'MONOCHROME2 ') + el(0x28, 0x10, b'US', struct.pack('<H', side))
            + el(0x28, 0x11, b'US', struct.pack('<H', side)) + el(0x28, 0x100, b'US', struct.pack('<H', 16))
            + el(0x28, 0x101, b'US', struct.pack('<H', 16)) + el(0x28, 0x102, b'US', struct.pack('<H', 15))
            + el(0x28, 0x103, b'US', struct.pack('<H', 0)) + el(0x7FE0, 0x10, b'OW', os.urandom(side * side * 2)))
    with open(path, 'wb') as f:
        f.write(b'\0' * 128 + b'DICM' + el(2, 0, b'UL', struct.pack('<I', len(meta))) + meta + data)


def nginx_conf(t, p, cert, key, backend):
    if backend:
        return f'''daemon off; worker_processes 1; pid {t}/nginx-backend.pid; error_log {t}/nginx-backend.err;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nodelay on; keepalive_requests 10000000;
  client_body_temp_path {t}/nb; proxy_temp_path {t}/nb; fastcgi_temp_path {t}/nb; uwsgi_temp_path {t}/nb;
  scgi_temp_path {t}/nb;
  server {{ listen 127.0.0.1:{p['backend']} backlog=4096; root {t}/www; }} }}
'''
    return f'''load_module {STREAM_MODULE};
daemon off; worker_processes 1; pid {t}/nginx.pid; error_log {t}/nginx.err;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 75s;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {cert}; ssl_certificate_key {key};
  client_body_temp_path {t}/nf; proxy_temp_path {t}/nf; fastcgi_temp_path {t}/nf; uwsgi_temp_path {t}/nf;
  scgi_temp_path {t}/nf;
  upstream backend {{ server 127.0.0.1:{p['backend']}; keepalive 64; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{p['nginx_https']} ssl backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_max_temp_file_size 0; }} }} }}
stream {{ server {{ listen 127.0.0.1:{p['nginx_dicom']} ssl; ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate {cert}; ssl_certificate_key {key}; proxy_pass 127.0.0.1:{p['scp']}; }} }}
'''


def haproxy_conf(p, cert_key):
    return f'''global
    nbthread 1
    maxconn 4000
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
frontend fe_https
    mode http
    bind 127.0.0.1:{p['haproxy_https']} ssl crt {cert_key}
    default_backend be_http
backend be_http
    mode http
    http-reuse always
    server s1 127.0.0.1:{p['backend']}
listen dicom_tls
    mode tcp
    bind 127.0.0.1:{p['haproxy_dicom']} ssl crt {cert_key}
    server s1 127.0.0.1:{p['scp']}
'''


def stunnel_conf(t, p, cert, key):
    return f'''foreground = yes
pid = {t}/stunnel.pid
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[https]
accept = 127.0.0.1:{p['stunnel_https']}
connect = 127.0.0.1:{p['backend']}
cert = {cert}
key = {key}
[dicom]
accept = 127.0.0.1:{p['stunnel_dicom']}
connect = 127.0.0.1:{p['scp']}
cert = {cert}
key = {key}
'''


def wrk(url, seconds, close=False, shim=None):
    argv = ['taskset', '-c', CLIENT_CPU, 'wrk', '-t1', '-c16', f'-d{seconds}s', url]
    env = dict(os.environ)
    if close:
        argv[5:5] = ['-H', 'Connection: close']
        env['LD_PRELOAD'] = shim
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
    requests = int(re.search(r'(\d+) requests in', out).group(1))
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)', out)
    if errors:
        sys.exit(f'bench: wrk saw errors against {url}:\n{out}')
    return requests, float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))


def measure(target, a, t, shim):
    """Returns {metric: value} for one terminator (None for plain direct, DICOM only)."""
    pgid = target['pgid']

    def cpu():
        return group_cpu(pgid) if pgid else 0.0
    res = {}
    if target.get('https'):
        url = f"https://127.0.0.1:{target['https']}"
        c0 = cpu()
        n, rps = wrk(url + '/1k', a.seconds)
        res['ka_rps'], res['ka_us'] = rps, (cpu() - c0) / n * 1e6
        c0 = cpu()
        n, rps = wrk(url + '/1k', a.seconds, close=True, shim=shim)
        res['hs_cps'], res['hs_us'] = rps, (cpu() - c0) / n * 1e6
        c0, t0 = cpu(), time.monotonic()
        out = run(['taskset', '-c', CLIENT_CPU, 'curl', '-sS', '--cacert', f'{t}/cert.pem', '-o', '/dev/null',
                   '-w', '%{size_download}', url + '/64m'])
        wall = time.monotonic() - t0
        if int(out) != 64 << 20:
            sys.exit(f'bench: short download through {target["name"]}: {out} bytes')
        res['dl_mbs'], res['dl_ms'] = (64 << 20) / wall / 1e6, (cpu() - c0) * 1e3
    files = [f'{t}/img.dcm'] * a.dicom_files
    argv = ['taskset', '-c', CLIENT_CPU, '/usr/bin/storescu', '-q', '-aec', 'BENCH']
    if target['name'] != 'plain':
        argv += ['+tla', '+cf', f'{t}/cert.pem']
    c0, t0 = cpu(), time.monotonic()
    run(argv + ['127.0.0.1', str(target['dicom'])] + files, env={**os.environ, **NODELAY})
    wall = time.monotonic() - t0
    size = os.path.getsize(files[0]) * len(files)
    res['dicom_mbs'], res['dicom_ms'] = size / wall / 1e6, (cpu() - c0) * 1e3
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pacsgate', default=os.path.join(os.environ.get('CARGO_TARGET_DIR', '/var/tmp/pacsgate-target'),
                                                       'release', 'pacsgate'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=8, help='wrk duration per run')
    ap.add_argument('--dicom-files', type=int, default=200)
    ap.add_argument('--out', help='also write the markdown table here')
    a = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit('bench: needs two CPUs (one for the terminators, one for the load)')

    t = tempfile.mkdtemp(prefix='pacsgate-bench-')
    os.chmod(t, 0o755)  # nginx workers drop to www-data and must read www/
    servers = Servers(t)
    try:
        cert, key, cert_key = make_pki(t)
        os.makedirs(f'{t}/www')
        os.makedirs(f'{t}/nb')
        os.makedirs(f'{t}/nf')
        with open(f'{t}/www/1k', 'wb') as f:
            f.write(os.urandom(1024))
        with open(f'{t}/www/64m', 'wb') as f:
            f.write(os.urandom(64 << 20))
        make_dicom(f'{t}/img.dcm', 512 << 10)
        run(['cc', '-shared', '-fPIC', '-o', f'{t}/noresume.so', '-x', 'c', '-', '-ldl'], input=SHIM_C)

        names = ['backend', 'scp', 'pacsgate_https', 'pacsgate_dicom', 'nginx_https', 'nginx_dicom',
                 'haproxy_https', 'haproxy_dicom', 'stunnel_https', 'stunnel_dicom']
        p = {n: free_port() for n in names}
        for name, body in (('backend.conf', nginx_conf(t, p, cert, key, True)),
                           ('nginx.conf', nginx_conf(t, p, cert, key, False)),
                           ('haproxy.cfg', haproxy_conf(p, cert_key)),
                           ('stunnel.conf', stunnel_conf(t, p, cert, key))):
            with open(f'{t}/{name}', 'w') as f:
                f.write(body)

        waits = [(servers.start('backend', ['nginx', '-c', f'{t}/backend.conf'], CLIENT_CPU), p['backend']),
                 (servers.start('storescp', ['/usr/bin/storescp', '--ignore', str(p['scp'])], CLIENT_CPU, NODELAY),
                  p['scp'])]
        env = {'BENCH_HTTPS_LISTEN': f"127.0.0.1:{p['pacsgate_https']}",
               'BENCH_HTTP_UPSTREAM': f"127.0.0.1:{p['backend']}",
               'BENCH_DICOM_LISTEN': f"127.0.0.1:{p['pacsgate_dicom']}",
               'BENCH_DICOM_UPSTREAM': f"127.0.0.1:{p['scp']}",
               'BENCH_CERT': cert, 'BENCH_KEY': key, 'BENCH_WORKDIR': t, 'PACSGATE_BIN': a.pacsgate}
        targets = []
        for name, argv, extra in (
                ('pacsgate', [os.path.join(HERE, 'candidate.sh')], env),
                ('nginx', ['nginx', '-c', f'{t}/nginx.conf'], None),
                ('haproxy', ['haproxy', '-db', '-f', f'{t}/haproxy.cfg'], None),
                ('stunnel', ['stunnel4', f'{t}/stunnel.conf'], None)):
            proc = servers.start(name, argv, SERVER_CPU, extra)
            waits += [(proc, p[f'{name}_https']), (proc, p[f'{name}_dicom'])]
            targets.append({'name': name, 'pgid': proc.pid, 'https': p[f'{name}_https'],
                            'dicom': p[f'{name}_dicom']})
        targets.append({'name': 'plain', 'pgid': None, 'dicom': p['scp']})
        for proc, port in waits:
            wait_port(port, proc)

        samples = {tg['name']: [] for tg in targets}
        for r in range(a.runs):
            for tg in targets:  # interleaved, so drift in the machine's load hits every target alike
                print(f'run {r + 1}/{a.runs}: {tg["name"]}', file=sys.stderr)
                samples[tg['name']].append(measure(tg, a, t, f'{t}/noresume.so'))
        table = report(samples, a)
        print(table)
        if a.out:
            with open(a.out, 'w') as f:
                f.write(table)
    finally:
        servers.stop()
        shutil.rmtree(t, ignore_errors=True)


def report(samples, a):
    med = {name: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for name, runs in samples.items()}
    g = med['pacsgate']
    rows = [('keep-alive req/s (wrk -t1 -c16, 1 KiB)', 'ka_rps', True),
            ('terminator CPU µs per keep-alive request', 'ka_us', False),
            ('full TLS 1.3 handshakes/s (Connection: close, no resumption)', 'hs_cps', True),
            ('terminator CPU µs per full handshake', 'hs_us', False),
            ('64 MiB download MB/s (curl, one connection)', 'dl_mbs', True),
            ('terminator CPU ms per 64 MiB download', 'dl_ms', False),
            (f'DICOM C-STORE MB/s (storescu +tla, {a.dicom_files} x 512 KiB)', 'dicom_mbs', True),
            ('terminator CPU ms per DICOM batch', 'dicom_ms', False)]
    peers = ['nginx', 'haproxy', 'stunnel']
    lines = ['| measurement | pacsgate | ' + ' | '.join(peers) + ' | plain (no TLS) | pacsgate vs nginx | '
             'vs HAProxy | vs stunnel | vs plain |',
             '|---|' + '---:|' * 9]
    for label, key, higher_better in rows:
        def cell(name):
            v = med[name].get(key)
            return '' if v is None else f'{v:,.1f}'

        def ratio(name):
            v = med[name].get(key)
            if not v or not g.get(key):
                return ''
            # ratios > 1.0 always mean "pacsgate is better"
            return f'{(g[key] / v if higher_better else v / g[key]):.2f}x'
        lines.append(f'| {label} | {cell("pacsgate")} | ' + ' | '.join(cell(n) for n in peers)
                     + f' | {cell("plain")} | ' + ' | '.join(ratio(n) for n in peers + ['plain']) + ' |')
    load = open('/proc/loadavg').read().split()[:3]
    lines.append('')
    lines.append(f'Medians of {a.runs} interleaved runs; ratios > 1.00x mean pacsgate is better (for CPU rows: '
                 f'peer CPU / pacsgate CPU). Load average at the end: {" ".join(load)}.')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
