// RFC 6962 / RFC 9162 Merkle tree hashing with WebCrypto SHA-256, and Ed25519 tree-head
// signatures with WebCrypto Ed25519. Pure functions over bytes; names from the RFC.
//
//   leaf hash  = SHA-256(0x00 ‖ leaf bytes)
//   node hash  = SHA-256(0x01 ‖ left ‖ right)

const encoder = new TextEncoder();

export class RootMismatch extends Error {}
export class ProofInputError extends Error {}

/** Whether WebCrypto is usable: it needs a secure context (HTTPS, or http://localhost / 127.0.0.1). */
export function cryptoAvailable() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && crypto.subtle);
}

export function utf8(text) { return encoder.encode(text); }

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Lowercase or uppercase hex of whole bytes -> bytes; ProofInputError otherwise. */
export function fromHex(text, name = "hash") {
  if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    throw new ProofInputError(`${name}: got ${JSON.stringify(text)}, want hex`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Standard padded base64 -> bytes; ProofInputError otherwise. */
export function fromBase64(text, name = "value") {
  if (typeof text !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new ProofInputError(`${name}: got ${JSON.stringify(text)}, want base64`);
  }
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** SHA-256(0x00 ‖ leaf). */
export function leafHash(leaf) { return sha256(concat(Uint8Array.of(0), leaf)); }

/** SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(left, right) { return sha256(concat(Uint8Array.of(1), left, right)); }

/**
 * The root of the tree of `size` leaves recomputed from the leaf hash at `index` and its
 * inclusion path (RFC 9162 §2.1.3.2). onStep({level, side, sibling, result}) is called
 * for every node hash, side "left" when the path's hash is the left child.
 */
export async function rootFromInclusionProof(index, size, leaf, path, onStep = () => {}) {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    throw new ProofInputError(`index: got ${index}, want 0 <= index < tree_size ${size}`);
  }
  if (leaf.length !== 32) throw new ProofInputError(`leaf hash: got ${leaf.length} bytes, want 32`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const [level, hashHex] of path.entries()) {
    const p = fromHex(hashHex, `inclusion_path[${level}]`);
    if (p.length !== 32) throw new ProofInputError(`inclusion_path[${level}]: got ${p.length} bytes, want 32`);
    if (sn === 0) throw new ProofInputError(`inclusion path: got ${path.length} hashes, want ${level}`);
    let side;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      side = "left";
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodeHash(r, p);
      side = "right";
    }
    onStep({ level, side, sibling: hashHex, result: hex(r) });
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProofInputError(`inclusion path: got ${path.length} hashes, too few for tree_size ${size}`);
  return r;
}

/** True when the raw 32-byte Ed25519 public key signed message with signature. */
export async function verifyEd25519(rawPublicKey, signature, message) {
  const key = await crypto.subtle.importKey("raw", rawPublicKey, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}
