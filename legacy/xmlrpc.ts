/**
 * Just enough XML-RPC (http://xmlrpc.com/spec.md) for the old index's API:
 * parse a methodCall, write a methodResponse or a fault. Plain code, no
 * dependencies, like the old system.
 */

export type XmlRpcValue = string | number | boolean | Date | null | XmlRpcValue[] | { [key: string]: XmlRpcValue };

/** A fault to send back: Python's xmlrpc.client raises it as `xmlrpc.client.Fault`. */
export class XmlRpcFault extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

// Codes from the XML-RPC fault code interoperability spec.
export const PARSE_ERROR = -32700;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const SERVER_ERROR = -32500;

interface Node {
  tag: string;
  children: Node[];
  text: string;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeText(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (whole, name: string) => {
    if (name[0] === '#') return String.fromCodePoint(name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : Number(name.slice(1)));
    return ENTITIES[name] ?? whole;
  });
}

function parseXml(xml: string): Node {
  const root: Node = { tag: '#root', children: [], text: '' };
  const stack: Node[] = [root];
  const token = /<!\[CDATA\[([\s\S]*?)\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|([^<]+)/g;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = token.exec(xml)) !== null) {
    consumed = token.lastIndex;
    const top = stack[stack.length - 1]!;
    if (m[1] !== undefined) top.text += m[1];
    else if (m[5] !== undefined) top.text += decodeText(m[5]);
    else if (m[3] !== undefined) {
      if (m[2] === '/') {
        if (stack.length === 1 || top.tag !== m[3]) throw new XmlRpcFault(PARSE_ERROR, `parse error: unexpected </${m[3]}>`);
        stack.pop();
      } else {
        const node: Node = { tag: m[3], children: [], text: '' };
        top.children.push(node);
        if (m[4] !== '/') stack.push(node);
      }
    }
  }
  if (consumed !== xml.length) throw new XmlRpcFault(PARSE_ERROR, 'parse error: not well-formed XML');
  if (stack.length !== 1) throw new XmlRpcFault(PARSE_ERROR, `parse error: <${stack[stack.length - 1]!.tag}> is not closed`);
  return root;
}

function child(node: Node, tag: string): Node | undefined {
  return node.children.find((c) => c.tag === tag);
}

function readValue(value: Node): XmlRpcValue {
  const typed = value.children[0];
  if (!typed) return value.text;
  switch (typed.tag) {
    case 'string': return typed.text;
    case 'int': case 'i4': case 'i8': {
      const n = Number(typed.text.trim());
      if (!Number.isInteger(n)) throw new XmlRpcFault(INVALID_PARAMS, `"${typed.text}" is not an integer`);
      return n;
    }
    case 'double': return Number(typed.text.trim());
    case 'boolean': return typed.text.trim() === '1';
    case 'nil': return null;
    case 'dateTime.iso8601': {
      const t = typed.text.trim().replace(/^(\d{4})(\d{2})(\d{2})T/, '$1-$2-$3T');
      return new Date(`${t}${/Z|[+-]\d\d:?\d\d$/.test(t) ? '' : 'Z'}`);
    }
    case 'base64': return Buffer.from(typed.text.trim(), 'base64').toString('utf8');
    case 'array': return (child(typed, 'data')?.children ?? []).filter((c) => c.tag === 'value').map(readValue);
    case 'struct': {
      const out: Record<string, XmlRpcValue> = {};
      for (const member of typed.children.filter((c) => c.tag === 'member')) {
        const name = child(member, 'name');
        const v = child(member, 'value');
        if (!name || !v) throw new XmlRpcFault(PARSE_ERROR, 'parse error: a struct member needs <name> and <value>');
        out[name.text] = readValue(v);
      }
      return out;
    }
    default: throw new XmlRpcFault(PARSE_ERROR, `parse error: unknown type <${typed.tag}>`);
  }
}

/** Parses `<methodCall>`: the method name and its parameters. */
export function parseMethodCall(xml: string): { method: string; params: XmlRpcValue[] } {
  const call = child(parseXml(xml), 'methodCall');
  const name = call && child(call, 'methodName');
  if (!call || !name || !name.text.trim()) throw new XmlRpcFault(PARSE_ERROR, 'parse error: expected <methodCall> with a <methodName>');
  const params = (child(call, 'params')?.children ?? []).filter((p) => p.tag === 'param').map((p) => {
    const v = child(p, 'value');
    if (!v) throw new XmlRpcFault(PARSE_ERROR, 'parse error: a <param> needs a <value>');
    return readValue(v);
  });
  return { method: name.text.trim(), params };
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function writeValue(v: XmlRpcValue): string {
  if (v === null) return '<value><nil/></value>';
  if (typeof v === 'string') return `<value><string>${escape(v)}</string></value>`;
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === 'number') return Number.isInteger(v) ? `<value><int>${v}</int></value>` : `<value><double>${v}</double></value>`;
  if (v instanceof Date) return `<value><dateTime.iso8601>${v.toISOString().slice(0, 19).replace(/-/g, '')}</dateTime.iso8601></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(writeValue).join('')}</data></array></value>`;
  const members = Object.entries(v).map(([k, x]) => `<member><name>${escape(k)}</name>${writeValue(x)}</member>`);
  return `<value><struct>${members.join('')}</struct></value>`;
}

export function methodResponse(value: XmlRpcValue): string {
  return `<?xml version='1.0'?>\n<methodResponse><params><param>${writeValue(value)}</param></params></methodResponse>\n`;
}

export function faultResponse(fault: XmlRpcFault): string {
  return `<?xml version='1.0'?>\n<methodResponse><fault>${writeValue({ faultCode: fault.code, faultString: fault.message })}</fault></methodResponse>\n`;
}
