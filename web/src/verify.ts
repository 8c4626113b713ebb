// Checking the audit log in the browser: a signed tree head's Ed25519 signature (WebCrypto) with
// the key its key_id names, and an entry's inclusion proof leading to that head's root.

import { create, toBinary } from "@bufbuild/protobuf";
import {
  AuditLeafSchema,
  TreeHeadToSignSchema,
  type AuditEntry,
  type AuditPublicKey,
  type SignedTreeHead,
} from "./gen/carerecord/access/v1/access_pb";
import { fromBinary } from "@bufbuild/protobuf";
import { equalBytes, leafHash, rootFromInclusionProof } from "./merkle";
import { hex } from "./ui";

export interface Check {
  ok: boolean;
  text: string;
}

/** The bytes a tree head's signature covers: the canonical encoding of its TreeHeadToSign. */
export function signedBytes(head: SignedTreeHead): Uint8Array {
  return toBinary(
    TreeHeadToSignSchema,
    create(TreeHeadToSignSchema, {
      logId: head.logId,
      treeSize: head.treeSize,
      rootHash: head.rootHash,
      timestamp: head.timestamp,
      keyId: head.keyId,
    }),
  );
}

export async function checkHead(head: SignedTreeHead, key: AuditPublicKey): Promise<Check[]> {
  const checks: Check[] = [];
  const keyId = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(key.publicKey))));
  checks.push({
    ok: keyId === head.keyId && keyId === key.keyId,
    text:
      keyId === head.keyId
        ? `The signing key is the one the head names (key ${keyId.slice(0, 16)}…).`
        : "The signing key is not the one the head names.",
  });
  let signatureOk = false;
  try {
    const publicKey = await crypto.subtle.importKey("raw", new Uint8Array(key.publicKey), { name: "Ed25519" }, false, ["verify"]);
    signatureOk = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, new Uint8Array(head.signature), new Uint8Array(signedBytes(head)));
  } catch {
    signatureOk = false;
  }
  checks.push({
    ok: signatureOk,
    text: signatureOk
      ? `The tree head's Ed25519 signature is valid: the log vouches for its first ${head.treeSize} entries.`
      : "The tree head's signature is not valid.",
  });
  return checks;
}

export async function checkInclusion(
  entry: AuditEntry,
  head: SignedTreeHead,
  path: Uint8Array[],
): Promise<Check[]> {
  const checks: Check[] = [];
  let decodedOk = false;
  try {
    const decoded = fromBinary(AuditLeafSchema, entry.leafData);
    decodedOk = decoded.entryId === entry.leaf?.entryId;
  } catch {
    decodedOk = false;
  }
  checks.push({
    ok: decodedOk,
    text: decodedOk ? "The entry's content matches the data that was hashed." : "The entry's content does not match its hashed data.",
  });
  const root = await rootFromInclusionProof(
    Number(entry.index),
    Number(head.treeSize),
    await leafHash(entry.leafData),
    path,
  );
  const included = root !== null && equalBytes(root, head.rootHash);
  checks.push({
    ok: included,
    text: included
      ? `Entry ${entry.index}'s inclusion proof leads to the signed root: the entry is in the log and has not been changed.`
      : `Entry ${entry.index}'s inclusion proof does not lead to the signed root.`,
  });
  return checks;
}
