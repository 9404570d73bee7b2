/**
 * The dashboard's HTTP server (node:http, no framework): `/` the page, `/api/status` the
 * views as JSON, `/api/events` the same pushed as server-sent events after every look,
 * `/metrics` for Prometheus. Read-only: every other method gets 405.
 *
 * Safe by default: the CLI binds to loopback unless told otherwise; with a token every
 * request must carry it (`Authorization: Bearer …` or `?token=…`), else 401. Without a token
 * only Host headers naming a loopback address are served (a web page elsewhere cannot reach
 * the dashboard through DNS rebinding). No response holds a password: views are built from
 * `user@host:port/db` names and redacted text.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { redact } from '../util/redact.js';
import { metricFamilies } from './metrics.js';
import type { Monitor } from './monitor.js';
import { DASHBOARD_PAGE } from './page.js';
import { PROMETHEUS_CONTENT_TYPE, renderMetrics } from './prom-text.js';

export interface DashboardServerOptions {
  host: string;
  port: number;
  token: string | undefined;
  /** What runs: `clone`, `serve`, … (shown on the page). */
  command: string;
  monitors: Monitor[];
}

export interface DashboardServer {
  /** The page's address (with the token when there is one). */
  url: string;
  port: number;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

const PAGE_POLICY =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** undefined when the request may be served, else the status to refuse it with. */
function refusal(req: http.IncomingMessage, url: URL, token: string | undefined): 401 | 403 | undefined {
  if (token !== undefined) {
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    return tokenMatches(bearer ?? url.searchParams.get('token'), token) ? undefined : 401;
  }
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  return isLoopback(host) ? undefined : 403;
}

function send(res: http.ServerResponse, status: number, type: string, body: string, extra = {}): void {
  res.writeHead(status, { 'content-type': type, ...SECURITY_HEADERS, ...extra });
  res.end(body);
}

export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const statusDoc = () =>
    redact(JSON.stringify({ command: o.command, databases: o.monitors.map((m) => m.view()) }));
  const streams = new Set<http.ServerResponse>();
  const push = () => {
    if (streams.size === 0) return;
    const data = `data: ${statusDoc()}\n\n`;
    for (const s of streams) s.write(data);
  };
  const unsubscribe = o.monitors.map((m) => m.onUpdate(push));
  const heartbeat = setInterval(() => {
    for (const s of streams) s.write(': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const refused = refusal(req, url, o.token);
    if (refused === 401) {
      return send(res, 401, 'text/plain; charset=utf-8', 'pgconvoy dashboard: a token is needed\n', {
        'www-authenticate': 'Bearer realm="pgconvoy"',
      });
    }
    if (refused === 403) {
      return send(res, 403, 'text/plain; charset=utf-8', 'pgconvoy dashboard: only served as localhost\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, 'text/plain; charset=utf-8', 'read-only\n', { allow: 'GET, HEAD' });
    }
    void Promise.all(o.monitors.map((m) => m.ready())).then(() => route(req, res, url));
  });
  const route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL): void => {
    switch (url.pathname) {
      case '/':
        return send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE, {
          'content-security-policy': PAGE_POLICY,
        });
      case '/api/status':
        return send(res, 200, 'application/json; charset=utf-8', statusDoc());
      case '/api/events':
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          connection: 'keep-alive',
          ...SECURITY_HEADERS,
        });
        res.write(`retry: 3000\ndata: ${statusDoc()}\n\n`);
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      case '/metrics':
        // A scrape gets a fresh look (looks in flight are shared, so scrapes cannot pile up).
        void Promise.all(o.monitors.map((m) => m.refresh())).then(() =>
          send(
            res,
            200,
            PROMETHEUS_CONTENT_TYPE,
            redact(renderMetrics(metricFamilies(o.monitors.map((m) => m.view())))),
          ),
        );
        return;
      default:
        return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${shownHost}:${port}/${o.token ? `?token=${encodeURIComponent(o.token)}` : ''}`,
    port,
    close: async () => {
      clearInterval(heartbeat);
      for (const u of unsubscribe) u();
      for (const s of streams) s.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
