// Canonical JSON, byte for byte as the ledger writes it (policies/canonical.py): keys sorted,
// separators "," and ":" with no spaces, UTF-8, non-ASCII written as itself.
//
// JSON.parse cannot be used on what we verify: it turns the number 12.0 into 12, and the
// canonical bytes of the leaf contain "12.0". parseLossless keeps every number's literal
// text (JsonNumber), so canonicalJson reproduces the exact bytes the server hashed.
//
//   canonicalJson(parseLossless('{"b": 1.0, "a": "é"}'))  ->  '{"a":"é","b":1.0}'

export class JsonNumber {
  constructor(text) { this.text = text; }
  valueOf() { return Number(this.text); }
  toString() { return this.text; }
  toJSON() { return Number(this.text); }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

export class JsonSyntaxError extends Error {}

/** JSON text -> values, with numbers as JsonNumber and objects without a prototype. */
export function parseLossless(text) {
  let at = 0;
  const fail = (what) => { throw new JsonSyntaxError(`JSON: ${what} at offset ${at}`); };
  const space = () => { while (at < text.length && " \t\n\r".includes(text[at])) at++; };
  const match = (re) => { re.lastIndex = at; const m = re.exec(text); if (!m) return null; at = re.lastIndex; return m[0]; };

  function value() {
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const out = Object.create(null);
      space();
      if (text[at] === "}") { at++; return out; }
      for (;;) {
        space();
        const key = match(STRING);
        if (key === null) fail("expected a string key");
        space();
        if (text[at++] !== ":") fail("expected ':'");
        out[JSON.parse(key)] = value();
        space();
        const sep = text[at++];
        if (sep === "}") return out;
        if (sep !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const out = [];
      space();
      if (text[at] === "]") { at++; return out; }
      for (;;) {
        out.push(value());
        space();
        const sep = text[at++];
        if (sep === "]") return out;
        if (sep !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') {
      const raw = match(STRING);
      if (raw === null) fail("bad string");
      return JSON.parse(raw);
    }
    for (const [word, result] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) { at += word.length; return result; }
    }
    const number = match(NUMBER);
    if (number === null) fail("unexpected character");
    return new JsonNumber(number);
  }

  const result = value();
  space();
  if (at !== text.length) fail("trailing characters");
  return result;
}

function byCodePoint(a, b) {
  const x = Array.from(a, (ch) => ch.codePointAt(0));
  const y = Array.from(b, (ch) => ch.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** The canonical JSON text of a value from parseLossless (or of plain JSON values). */
export function canonicalJson(value) {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (value instanceof JsonNumber) return value.text;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new TypeError("canonicalJson: a non-integer JS number has no exact canonical form; parse with parseLossless");
    return String(value);
  }
  // JSON.stringify escapes exactly what Python's json.dumps(ensure_ascii=False) escapes:
  // '"', '\\', \b \f \n \r \t, and other control characters as lowercase \u00XX.
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  const keys = Object.keys(value).sort(byCodePoint);
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
}

/** Lossless values -> plain JS values (numbers as Number), for display and counting. */
export function toPlain(value) {
  if (value instanceof JsonNumber) return Number(value.text);
  if (Array.isArray(value)) return value.map(toPlain);
  if (value && typeof value === "object") {
    const out = {};
    for (const k of Object.keys(value)) out[k] = toPlain(value[k]);
    return out;
  }
  return value;
}
