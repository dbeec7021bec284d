// In-browser verification of one ledger entry, step by step, trusting nothing the server
// says about hashes: the leaf hash is recomputed from the entry's canonical JSON, the root
// from the inclusion path, and the root must be the one in a tree head signed with the
// ledger's Ed25519 key (whose id may be pinned by the auditor).
//
// Each step is {id, ok, facts: [[label, value]], error}; the entry is verified when every
// step is ok. A failed step does not stop the next ones, so the page shows everything.

import * as api from "./api.js";
import { canonicalJson } from "./json.js";
import {
  equalBytes, fromBase64, fromHex, hex, leafHash, rootFromInclusionProof, sha256, utf8, verifyEd25519,
} from "./merkle.js";

const PINNED = "corridor.pinnedKeyId";

/** The key id the auditor pinned (hex SHA-256 of the ledger's public key), if any. */
export const pinnedKey = {
  get() { return localStorage.getItem(PINNED) || ""; },
  set(id) { if (id) localStorage.setItem(PINNED, id.trim().toLowerCase()); else localStorage.removeItem(PINNED); },
};

/** The signed bytes of a tree head: canonical JSON of its four unsigned fields. */
export function signedBytes(head) {
  const { tree_size, root_hash, timestamp, key_id } = head;
  return utf8(canonicalJson({ tree_size, root_hash, timestamp, key_id }));
}

/** Run fn(step) and record its failure as the step's error instead of throwing. */
async function step(id, fn) {
  const record = { id, ok: false, facts: [], error: null };
  try {
    await fn(record);
  } catch (err) {
    record.ok = false;
    record.error = err.message || String(err);
  }
  return record;
}

/** The "key" and "signature" steps for a signed tree head and the published key. */
export async function headSteps(head, published) {
  let rawKey = null;
  const key = await step("key", async (r) => {
    rawKey = fromBase64(published.public_key, "public_key");
    const id = hex(await sha256(rawKey));
    const pinned = pinnedKey.get();
    r.facts.push(["key_id", id], ["head_key_id", head.key_id]);
    if (pinned) r.facts.push(["pinned_key_id", pinned]);
    if (rawKey.length !== 32) throw new Error(`public key: got ${rawKey.length} bytes, want 32`);
    if (id !== published.key_id) throw new Error(`published key_id ${published.key_id} is not the SHA-256 of the key (${id})`);
    if (head.key_id !== id) throw new Error(`tree head names key ${head.key_id}, the published key is ${id}`);
    if (pinned && pinned !== id) throw new Error(`key ${id} is not the pinned key ${pinned}`);
    r.ok = true;
  });
  const signature = await step("signature", async (r) => {
    const message = signedBytes(head);
    r.facts.push(["signed_bytes", new TextDecoder().decode(message)], ["signature", head.signature],
      ["timestamp", head.timestamp]);
    if (!rawKey) throw new Error("no usable public key (see the step above)");
    const bytes = fromBase64(head.signature, "signature");
    r.ok = bytes.length === 64 && await verifyEd25519(rawKey, bytes, message);
    if (!r.ok) r.error = "bad_signature";
  });
  return [key, signature];
}

/**
 * Verify `item` ({index, leaf_hash, entry} as /audit/entries serves it, parsed losslessly).
 * Fetches the signed tree head, the public key and the inclusion proof.
 * onStep(record) is called as each step finishes.
 */
export async function verifyItem(item, onStep = () => {}) {
  const head = await api.getLossless("/audit/tree-head");
  const published = await api.get("/audit/public-key");
  const treeSize = Number(head.tree_size);
  const steps = [];
  const done = (record) => { steps.push(record); onStep(record); return record; };
  let computedLeaf = null;
  let computedRoot = null;

  done(await step("leaf", async (r) => {
    const bytes = utf8(canonicalJson(item.entry));
    computedLeaf = await leafHash(bytes);
    r.facts.push(["canonical_bytes", `${bytes.length} B`], ["computed", hex(computedLeaf)],
      ["served", item.leaf_hash]);
    if (Number(item.entry.index) !== Number(item.index)) {
      throw new Error(`entry.index ${item.entry.index} differs from the item's index ${item.index}`);
    }
    r.ok = hex(computedLeaf) === String(item.leaf_hash).toLowerCase();
    if (!r.ok) r.error = "leaf_mismatch";
  }));

  done(await step("path", async (r) => {
    r.facts.push(["tree_size", String(treeSize)], ["leaf_index", String(item.index)]);
    if (Number(item.index) >= treeSize) throw new Error(`entry ${item.index} is not yet covered by the signed tree head of size ${treeSize}; verify again in a moment`);
    const proof = await api.get("/audit/proof/inclusion", { index: item.index, tree_size: treeSize });
    if (proof.leaf_index !== Number(item.index) || proof.tree_size !== treeSize) {
      throw new Error(`proof for leaf ${proof.leaf_index} in tree ${proof.tree_size}, asked for ${item.index} in ${treeSize}`);
    }
    r.path = [];
    computedRoot = await rootFromInclusionProof(Number(item.index), treeSize, computedLeaf,
      proof.inclusion_path, (node) => r.path.push(node));
    r.facts.push(["path_length", String(proof.inclusion_path.length)], ["computed_root", hex(computedRoot)]);
    r.ok = true;
  }));

  done(await step("root", async (r) => {
    r.facts.push(["computed_root", computedRoot ? hex(computedRoot) : "—"], ["signed_root", head.root_hash]);
    if (!computedRoot) throw new Error("no root was computed (see the step above)");
    r.ok = equalBytes(computedRoot, fromHex(head.root_hash, "root_hash"));
    if (!r.ok) r.error = "root_mismatch";
  }));

  for (const record of await headSteps(head, published)) done(record);

  return { ok: steps.every((r) => r.ok), steps, head };
}

/**
 * Verify every line of an export made with ?tree_size= against the signed head `head`
 * (already checked by the caller): leaf hash, and root from each line's inclusion path.
 */
export async function verifyExport(lines, head) {
  const root = fromHex(head.root_hash, "root_hash");
  const failures = [];
  for (const item of lines) {
    try {
      const leaf = await leafHash(utf8(canonicalJson(item.entry)));
      if (hex(leaf) !== item.leaf_hash) throw new Error("leaf_mismatch");
      const computed = await rootFromInclusionProof(Number(item.index), Number(item.tree_size), leaf, item.inclusion_path);
      if (!equalBytes(computed, root)) throw new Error("root_mismatch");
    } catch (err) {
      failures.push({ index: Number(item.index), error: err.message });
    }
  }
  return failures;
}
