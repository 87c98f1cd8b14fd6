/**
 * The status recorded for a request whose client went away before the answer was complete: 499, nginx's
 * "client closed request". It is never sent; logs, metrics, spans and the usage ledger record it.
 */
export const CLIENT_CLOSED = 499;
