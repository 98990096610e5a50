import type { ServedRequest } from '../http/http-server.js';
import type { MetricsRegistry } from './metrics-registry.js';

/**
 * Request counts and latency of one HTTP server (the API or the agent protocol),
 * labelled by route pattern, never by raw path, so the series stay few. Streams
 * (event feeds, outgoing migrations) count when they end.
 */
export function httpMetrics(registry: MetricsRegistry): (served: ServedRequest) => void {
  const requests = registry.counter({ name: 'motus_http_requests_total', help: 'HTTP requests answered, by method, route pattern and status.', labelNames: ['method', 'route', 'status'] });
  const seconds = registry.histogram({
    name: 'motus_http_request_duration_seconds',
    help: 'Time to answer an HTTP request (to the end of the stream for streams), by method and route pattern.',
    labelNames: ['method', 'route'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
  });
  return (served) => {
    requests.inc({ method: served.method, route: served.route, status: String(served.status) });
    seconds.observe({ method: served.method, route: served.route }, served.seconds);
  };
}
