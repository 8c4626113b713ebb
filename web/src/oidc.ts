// OpenID Connect sign-in as a public browser client: the authorization code flow with PKCE
// (RFC 6749 section 4.1, RFC 7636 with S256). Pure functions, unit-tested in web/test/.

export interface SignInConfig {
  authorizationUrl: string;
  tokenUrl: string;
  clientId: string;
  scope: string;
  development?: boolean;
}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A code verifier: 32 random bytes, base64url (43 characters, RFC 7636 section 4.1). */
export function newVerifier(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** A state value binding the callback to this browser's request. */
export function newState(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(16)));
}

/** The S256 code challenge: BASE64URL(SHA-256(ASCII(verifier))). */
export async function challengeS256(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The authorization request URL. `base` resolves a path-only authorization URL. */
export function authorizeUrl(
  config: SignInConfig,
  params: { state: string; challenge: string; redirectUri: string },
  base: string,
): string {
  const url = new URL(config.authorizationUrl, base);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("client_id", config.clientId);
  url.searchParams.set("redirect_uri", params.redirectUri);
  url.searchParams.set("scope", config.scope);
  url.searchParams.set("state", params.state);
  url.searchParams.set("code_challenge", params.challenge);
  url.searchParams.set("code_challenge_method", "S256");
  return url.toString();
}

/** The token request's form body for the code returned. */
export function tokenRequestBody(
  config: SignInConfig,
  params: { code: string; verifier: string; redirectUri: string },
): URLSearchParams {
  return new URLSearchParams({
    grant_type: "authorization_code",
    code: params.code,
    redirect_uri: params.redirectUri,
    client_id: config.clientId,
    code_verifier: params.verifier,
  });
}

/** The callback's code, if its state is the one this browser sent; an error message otherwise. */
export function readCallback(search: string, expectedState: string | null): { code: string } | { error: string } {
  const params = new URLSearchParams(search);
  const error = params.get("error");
  if (error) return { error: params.get("error_description") ?? error };
  const code = params.get("code");
  const state = params.get("state");
  if (!code || !state) return { error: "The sign-in response was incomplete." };
  if (!expectedState || state !== expectedState) return { error: "The sign-in response was not for this browser's request." };
  return { code };
}
