// Unit tests of the console's pure modules (PKCE and the authorization request; RFC 6962 inclusion
// proofs), bundled from their TypeScript by esbuild and run by node's test runner:
//   node --test web/test/unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";

async function load(entry) {
  const out = await build({
    entryPoints: [new URL(`../src/${entry}`, import.meta.url).pathname],
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  return import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
}

const oidc = await load("oidc.ts");
const merkle = await load("merkle.ts");

test("the S256 challenge is RFC 7636's (appendix B)", async () => {
  assert.equal(
    await oidc.challengeS256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
  );
  const verifier = oidc.newVerifier();
  assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(verifier, oidc.newVerifier());
});

test("the authorization request carries the code flow's and PKCE's parameters", () => {
  const config = { authorizationUrl: "https://login.example/oauth2/authorize?tenant=x", tokenUrl: "https://login.example/token", clientId: "console", scope: "openid profile" };
  const url = new URL(oidc.authorizeUrl(config, { state: "st", challenge: "ch", redirectUri: "https://console.example/signed-in" }, "https://console.example"));
  assert.equal(url.origin + url.pathname, "https://login.example/oauth2/authorize");
  assert.equal(url.searchParams.get("tenant"), "x");
  assert.equal(url.searchParams.get("response_type"), "code");
  assert.equal(url.searchParams.get("client_id"), "console");
  assert.equal(url.searchParams.get("redirect_uri"), "https://console.example/signed-in");
  assert.equal(url.searchParams.get("scope"), "openid profile");
  assert.equal(url.searchParams.get("state"), "st");
  assert.equal(url.searchParams.get("code_challenge"), "ch");
  assert.equal(url.searchParams.get("code_challenge_method"), "S256");
  const relative = new URL(oidc.authorizeUrl({ ...config, authorizationUrl: "/dev-sign-in/authorize" }, { state: "s", challenge: "c", redirectUri: "r" }, "http://127.0.0.1:8082"));
  assert.equal(relative.origin, "http://127.0.0.1:8082");
  const body = oidc.tokenRequestBody(config, { code: "abc", verifier: "v", redirectUri: "https://console.example/signed-in" });
  assert.equal(body.toString(), "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fconsole.example%2Fsigned-in&client_id=console&code_verifier=v");
});

test("a callback is accepted only with the state this browser sent", () => {
  assert.deepEqual(oidc.readCallback("?code=c1&state=s1", "s1"), { code: "c1" });
  assert.ok("error" in oidc.readCallback("?code=c1&state=other", "s1"));
  assert.ok("error" in oidc.readCallback("?code=c1&state=s1", null));
  assert.ok("error" in oidc.readCallback("?state=s1", "s1"));
  assert.deepEqual(oidc.readCallback("?error=access_denied&error_description=No", "s1"), { error: "No" });
});

test("inclusion proofs lead to the root for every leaf of trees of 1 to 17 leaves, and not otherwise", async () => {
  for (let size = 1; size <= 17; size++) {
    const leaves = Array.from({ length: size }, (_, i) => new TextEncoder().encode(`leaf ${i}`));
    const root = await merkle.rootOf(leaves);
    for (let i = 0; i < size; i++) {
      const path = await merkle.pathOf(i, leaves);
      const leaf = await merkle.leafHash(leaves[i]);
      const got = await merkle.rootFromInclusionProof(i, size, leaf, path);
      assert.ok(got && merkle.equalBytes(got, root), `size ${size}, leaf ${i}`);
      const other = await merkle.leafHash(new TextEncoder().encode("another"));
      const wrong = await merkle.rootFromInclusionProof(i, size, other, path);
      assert.ok(!wrong || !merkle.equalBytes(wrong, root), `a changed leaf fails (size ${size}, leaf ${i})`);
      if (path.length > 0) {
        assert.equal(await merkle.rootFromInclusionProof(i, size, leaf, path.slice(1)), null, "a short proof fails");
      }
      assert.equal(await merkle.rootFromInclusionProof(i, size, leaf, [...path, root]), null, "a long proof fails");
    }
  }
});

test("an empty tree's root is SHA-256 of nothing", async () => {
  const empty = await merkle.rootOf([]);
  assert.equal(Buffer.from(empty).toString("hex"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});
