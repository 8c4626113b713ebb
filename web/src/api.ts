// Data access's front door from the browser: gRPC-Web on this origin with the signed-in user's
// token. An UNAUTHENTICATED answer (an expired or refused token) ends the session and goes back to
// sign-in.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { DataAccessService } from "./gen/carerecord/access/v1/access_pb";
import * as session from "./session";

export type Access = Client<typeof DataAccessService>;

/** Thrown after the session has ended and sign-in has been shown: the page stops quietly. */
export class SessionEnded extends Error {}

let onSessionEnded: () => void = () => {};

export function whenSessionEnds(handler: () => void): void {
  onSessionEnded = handler;
}

function endSession(): never {
  session.clear();
  onSessionEnded();
  throw new SessionEnded("the session has ended");
}

const authorise: Interceptor = (next) => async (request) => {
  const current = session.current();
  if (!current) endSession();
  request.header.set("authorization", `Bearer ${current.token}`);
  try {
    return await next(request);
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Unauthenticated) endSession();
    throw e;
  }
};

export const access: Access = createClient(
  DataAccessService,
  createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [authorise] }),
);

/** The google.rpc.ErrorInfo reason of an error (e.g. `PATIENT_CONTEXT_MISMATCH`), or "". */
export function reasonOf(error: unknown): string {
  if (!(error instanceof ConnectError)) return "";
  for (const detail of error.details) {
    if (!("type" in detail) || detail.type !== "google.rpc.ErrorInfo") continue;
    const reader = new BinaryReader(detail.value);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1) return reader.string();
      reader.skip(wireType);
    }
  }
  return "";
}

/** What to tell a person about a failed call, in plain words. */
export function describe(error: unknown): string {
  const reason = reasonOf(error);
  switch (reason) {
    case "PATIENT_CONTEXT_MISMATCH":
      return "You can only see and change your own record. This page is about someone else.";
    case "SELF_REVIEW":
      return "You cannot review your own emergency access. Another privacy officer must review it.";
    case "ROLE_NOT_PERMITTED":
    case "SCOPE_MISSING":
      return "Your account is not allowed to do this.";
    case "ETAG_MISMATCH":
      return "Someone else changed this at the same time. The page has been refreshed: try again.";
    case "PATIENT_NOT_FOUND":
      return "No patient with that reference was found.";
  }
  if (error instanceof ConnectError) {
    if (error.code === Code.Unavailable) return "The service is not available at the moment. Try again later.";
    if (error.code === Code.InvalidArgument) return error.rawMessage;
    return error.rawMessage || "Something went wrong.";
  }
  return "Something went wrong.";
}
