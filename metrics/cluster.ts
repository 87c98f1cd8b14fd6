import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

const ASK = 'banyan:metrics?';
const ANSWER = 'banyan:metrics';

interface Message {
  type?: string;
  id?: number;
  text?: string;
  error?: string;
}

/**
 * In the primary of `banyan proxy --workers N`: answers a worker's request
 * for the whole cluster's metrics. prom-client's AggregatorRegistry asks
 * every worker for its registry and merges them (counters and histograms
 * summed; gauges as each metric's `aggregator` says).
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: Message) => {
    if (message?.type !== ASK) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: ANSWER, id: message.id, text }),
      (err: Error) => worker.send({ type: ANSWER, id: message.id, error: err.message }),
    );
  });
}

/**
 * In a worker: registers this worker's registry with prom-client's cluster
 * protocol, and returns a function that fetches the merged metrics of all
 * workers from the primary (whichever worker the scrape reached).
 */
export function clusterMetricsClient(registry: Registry, timeoutMs = 5_000): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's worker-side listener; setRegistries alone does not.
  new AggregatorRegistry();
  const waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void }>();
  let next = 0;
  process.on('message', (message: Message) => {
    if (message?.type !== ANSWER || message.id === undefined) return;
    const w = waiting.get(message.id);
    if (!w) return;
    waiting.delete(message.id);
    if (message.error !== undefined) w.reject(new Error(`the cluster's metrics could not be gathered: ${message.error}`));
    else w.resolve(message.text ?? '');
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`the proxy's primary process did not send the cluster's metrics within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      process.send!({ type: ASK, id });
    });
}
