import { XMLParser, XMLValidator } from 'fast-xml-parser';

/**
 * XML-RPC (http://xmlrpc.com/spec.md) for the old index's API: read a
 * methodCall with a well-kept parser, write a methodResponse or a fault.
 */

export type XmlRpcValue = string | number | boolean | Date | null | XmlRpcValue[] | { [key: string]: XmlRpcValue };

/** A fault to send back: Python's xmlrpc.client raises it as `xmlrpc.client.Fault`. */
export class XmlRpcFault extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

// Codes from the XML-RPC fault code interoperability spec.
export const PARSE_ERROR = -32700;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;

const ARRAYS = new Set(['param', 'value', 'member']);

/*
 * fast-xml-parser reads the document; entity processing is off, so no DOCTYPE
 * can expand (billion laughs), and the five predefined entities and character
 * references are decoded here, in text values only.
 */
const parser = new XMLParser({
  ignoreAttributes: true,
  processEntities: false,
  parseTagValue: false,
  trimValues: false,
  ignoreDeclaration: true,
  isArray: (name) => ARRAYS.has(name),
});

type Node = Record<string, unknown>;

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeText(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|\w+);/gi, (whole, name: string) => {
    if (name[0] !== '#') return ENTITIES[name] ?? whole;
    const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : Number(name.slice(1));
    return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

function parseXml(xml: string): Node {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new XmlRpcFault(PARSE_ERROR, 'parse error: DOCTYPE and ENTITY declarations are not accepted');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new XmlRpcFault(PARSE_ERROR, `parse error: ${valid.err.msg} (line ${valid.err.line})`);
  return parser.parse(xml) as Node;
}

/** An element's text: a plain string, or the text beside its child elements. */
function textOf(node: unknown): string {
  if (node === undefined || node === null) return '';
  if (typeof node === 'string') return decodeText(node);
  const text = (node as Node)['#text'];
  return typeof text === 'string' ? decodeText(text) : '';
}

function one(node: unknown, tag: string): unknown {
  if (!node || typeof node !== 'object') return undefined;
  const v = (node as Node)[tag];
  return Array.isArray(v) ? v[0] : v;
}

function many(node: unknown, tag: string): unknown[] {
  if (!node || typeof node !== 'object') return [];
  const v = (node as Node)[tag];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function readValue(value: unknown): XmlRpcValue {
  if (value === null || typeof value !== 'object') return textOf(value);
  const typed = Object.keys(value as Node).filter((k) => k !== '#text');
  if (typed.length === 0) return textOf(value);
  if (typed.length > 1) throw new XmlRpcFault(PARSE_ERROR, `parse error: a <value> holds one type, not ${typed.join(', ')}`);
  const tag = typed[0]!;
  const inner = (value as Node)[tag];
  const text = textOf(inner);
  switch (tag) {
    case 'string':
      return text;
    case 'int':
    case 'i4':
    case 'i8': {
      const n = Number(text.trim());
      if (!/^[+-]?\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) throw new XmlRpcFault(INVALID_PARAMS, `"${text}" is not an integer`);
      return n;
    }
    case 'double': {
      const n = Number(text.trim());
      if (!Number.isFinite(n)) throw new XmlRpcFault(INVALID_PARAMS, `"${text}" is not a number`);
      return n;
    }
    case 'boolean': {
      if (text.trim() !== '0' && text.trim() !== '1') throw new XmlRpcFault(INVALID_PARAMS, `"${text}" is not a boolean (0 or 1)`);
      return text.trim() === '1';
    }
    case 'nil':
      return null;
    case 'dateTime.iso8601': {
      const t = text.trim().replace(/^(\d{4})(\d{2})(\d{2})T/, '$1-$2-$3T');
      const date = new Date(`${t}${/Z|[+-]\d\d:?\d\d$/.test(t) ? '' : 'Z'}`);
      if (Number.isNaN(date.getTime())) throw new XmlRpcFault(INVALID_PARAMS, `"${text}" is not a dateTime.iso8601`);
      return date;
    }
    case 'base64':
      return Buffer.from(text.trim(), 'base64').toString('utf8');
    case 'array':
      return many(one(inner, 'data'), 'value').map(readValue);
    case 'struct': {
      const out: Record<string, XmlRpcValue> = Object.create(null) as Record<string, XmlRpcValue>;
      for (const member of many(inner, 'member')) {
        const name = one(member, 'name');
        const v = one(member, 'value');
        if (name === undefined || v === undefined)
          throw new XmlRpcFault(PARSE_ERROR, 'parse error: a struct member needs <name> and <value>');
        out[textOf(name)] = readValue(v);
      }
      return out;
    }
    default:
      throw new XmlRpcFault(PARSE_ERROR, `parse error: unknown type <${tag}>`);
  }
}

/** Parses `<methodCall>`: the method name and its parameters. */
export function parseMethodCall(xml: string): { method: string; params: XmlRpcValue[] } {
  const call = one(parseXml(xml), 'methodCall');
  const name = textOf(one(call, 'methodName')).trim();
  if (!call || !name) throw new XmlRpcFault(PARSE_ERROR, 'parse error: expected <methodCall> with a <methodName>');
  const params = many(one(call, 'params'), 'param').map((p) => {
    const v = one(p, 'value');
    if (v === undefined) throw new XmlRpcFault(PARSE_ERROR, 'parse error: a <param> needs a <value>');
    return readValue(v);
  });
  return { method: name, params };
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
