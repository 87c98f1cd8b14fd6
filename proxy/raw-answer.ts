import { STATUS_CODES } from 'node:http';

/**
 * An HTTP/1.1 answer written straight to a socket, where there is no ServerResponse to answer with (an
 * upgrade refused, CONNECT, a request Node's parser rejected, a connection over the limit): the status
 * line with its standard reason, a plain-text body with its length, any `headers`, and `Connection:
 * close`, since the socket is closed after it.
 */
export function rawAnswer(status: number, body: string, headers: Readonly<Record<string, string>> = {}): string {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`, 'Content-Type: text/plain; charset=utf-8'];
  lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push('Connection: close', '', body);
  return lines.join('\r\n');
}
