import type { UpstreamEvents } from '../../proxy/upstreams/index.js';

/** The events a set told, one line each (`app http://… down`), and a hook to look at the world when one comes. */
export function recorder(onEvent: (line: string) => void = () => {}): { events: UpstreamEvents; seen: string[] } {
  const seen: string[] = [];
  const note = (line: string) => {
    seen.push(line);
    onEvent(line);
  };
  return {
    seen,
    events: {
      endpointUp: (s, e, up) => note(`${s} ${e} ${up ? 'up' : 'down'}`),
      breaker: (s, e, state) => note(`${s} ${e} breaker ${state}`),
      ejected: (s, e, reason) => note(`${s} ${e} ejected ${reason}`),
      removed: (s, e) => note(`${s} ${e} removed`),
    },
  };
}
