// The signed-in user's access token, kept in this tab's session storage only (never a cookie),
// with what its claims say about them for display. Data access verifies the token on every call.

const KEY = "carerecord.session";
const PENDING = "carerecord.sign-in";

export interface Claims {
  sub: string;
  name?: string;
  role_code?: string;
  organisation_ods_code?: string;
  patient?: string;
  scope?: string;
  exp?: number;
}

export interface Session {
  token: string;
  /** Milliseconds since the epoch after which the token is not used. */
  expiresAt: number;
  claims: Claims;
}

export type Role = "privacy-officer" | "patient" | "clinician" | "other";

export function roleOf(claims: Claims): Role {
  if (claims.patient) return "patient";
  if (claims.role_code === "R0001") return "privacy-officer";
  if (claims.role_code?.startsWith("R80")) return "clinician";
  return "other";
}

/** The claims of a JWT, read without verifying (data access verifies). */
export function decodeClaims(token: string): Claims {
  const payload = token.split(".")[1] ?? "";
  const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Claims;
}

export function save(token: string, expiresInSeconds: number | undefined): Session {
  const claims = decodeClaims(token);
  const fromClaims = claims.exp ? claims.exp * 1000 : Infinity;
  const fromResponse = expiresInSeconds ? Date.now() + expiresInSeconds * 1000 : Infinity;
  const expiresAt = Math.min(fromClaims, fromResponse);
  const session = { token, expiresAt: Number.isFinite(expiresAt) ? expiresAt : Date.now() + 3600_000, claims };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

/** The current session, or null when there is none or it has expired. */
export function current(): Session | null {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const session = JSON.parse(raw) as Session;
    return Date.now() < session.expiresAt ? session : null;
  } catch {
    return null;
  }
}

/** Whether a session was stored (expired or not): a sign-in page then says it has ended. */
export function hadSession(): boolean {
  return sessionStorage.getItem(KEY) !== null;
}

export function clear(): void {
  sessionStorage.removeItem(KEY);
}

export function savePending(pending: { state: string; verifier: string; redirectUri: string }): void {
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
}

export function takePending(): { state: string; verifier: string; redirectUri: string } | null {
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  return raw ? JSON.parse(raw) : null;
}
