// The console's entry point: the layout (NHS.UK header with the user's pages), routing in the
// browser, and sign-in (authorization code with PKCE against the issuer /config.json names).

import { SessionEnded, whenSessionEnds } from "./api";
import * as oidc from "./oidc";
import { auditPage } from "./pages/audit";
import { clinicianPage } from "./pages/clinician";
import { recordAccessPage, sharingPage } from "./pages/patient";
import { reviewPage } from "./pages/review";
import * as session from "./session";
import { errorSummary, h, replace } from "./ui";

interface Config {
  signIn: oidc.SignInConfig | null;
}

let config: Config = { signIn: null };

const app = document.getElementById("app")!;

function navigate(path: string): void {
  history.pushState(null, "", path);
  void route();
}

/** The pages a user has, for the header. */
function pagesOf(s: session.Session): [string, string][] {
  switch (session.roleOf(s.claims)) {
    case "privacy-officer":
      return [
        ["/review", "Access to review"],
        ["/audit", "Audit log"],
      ];
    case "patient":
      return [
        [`/patients/${s.claims.patient}/record-access`, "Who has seen your record"],
        [`/patients/${s.claims.patient}/sharing`, "Your sharing choices"],
      ];
    case "clinician":
      return [["/clinician", "Read a patient's record"]];
    default:
      return [];
  }
}

/** The NHS logo, as the NHS.UK frontend's header draws it. */
function nhsLogo(): SVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [name, value] of Object.entries({
    class: "nhsuk-header__logo",
    viewBox: "0 0 200 80",
    height: "40",
    width: "100",
    focusable: "false",
    role: "img",
    "aria-label": "NHS",
  })) {
    svg.setAttribute(name, value);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = "NHS";
  const path = document.createElementNS(ns, "path");
  path.setAttribute("fill", "currentcolor");
  path.setAttribute(
    "d",
    "M200 0v80H0V0h200Zm-27.5 5.5c-14.5 0-29 5-29 22 0 10.2 7.7 13.5 14.7 16.3l.7.3c5.4 2 10.1 3.9 10.1 8.4 0 6.5-8.5 7.5-14 7.5s-12.5-1.5-16-3.5L135 70c5.5 2 13.5 3.5 20 3.5 15.5 0 32-4.5 32-22.5 0-19.5-25.5-16.5-25.5-25.5 0-5.5 5.5-6.5 12.5-6.5a35 35 0 0 1 14.5 3l4-13.5c-4.5-2-12-3-20-3Zm-131 2h-22l-14 65H22l9-45h.5l13.5 45h21.5l14-65H64l-9 45h-.5l-13-45Zm63 0h-18l-13 65h17l6-28H117l-5.5 28H129l13.5-65H125L119.5 32h-20l5-24.5Z",
  );
  svg.append(title, path);
  return svg;
}

function header(s: session.Session | null): HTMLElement {
  const links = s ? pagesOf(s) : [];
  const nav = links.length
    ? h(
        "nav",
        { class: "nhsuk-header__navigation", "aria-label": "Menu" },
        h(
          "div",
          { class: "nhsuk-header__navigation-container nhsuk-width-container" },
          h(
            "ul",
            { class: "nhsuk-header__navigation-list" },
            ...links.map(([href, text]) =>
              h(
                "li",
                { class: "nhsuk-header__navigation-item" },
                h("a", { class: "nhsuk-header__navigation-link", href, "aria-current": location.pathname === href ? "page" : undefined }, text),
              ),
            ),
          ),
        ),
      )
    : null;
  const account = s
    ? h(
        "nav",
        { class: "nhsuk-header__account", "aria-label": "Account" },
        h(
          "ul",
          { class: "nhsuk-header__account-list" },
          h("li", { class: "nhsuk-header__account-item" }, h("span", { class: "app-user" }, s.claims.name || s.claims.sub)),
          h("li", { class: "nhsuk-header__account-item" }, h("a", { class: "nhsuk-header__account-link", href: "/sign-out" }, "Sign out")),
        ),
      )
    : null;
  return h(
    "header",
    { class: "nhsuk-header", role: "banner" },
    h(
      "div",
      { class: "nhsuk-header__container nhsuk-width-container" },
      h(
        "div",
        { class: "nhsuk-header__service" },
        h(
          "a",
          { class: "nhsuk-header__service-logo", href: "/", "aria-label": "NHS Care record console homepage" },
          nhsLogo(),
          h("span", { class: "nhsuk-header__service-name" }, "Care record console"),
        ),
      ),
      account,
    ),
    nav,
  );
}

function layout(s: session.Session | null): HTMLElement {
  const main = h("main", { class: "nhsuk-main-wrapper", id: "maincontent", role: "main" });
  replace(app, 
    header(s),
    h("div", { class: "nhsuk-width-container" }, main),
    h(
      "footer",
      { role: "contentinfo" },
      h(
        "div",
        { class: "nhsuk-footer" },
        h("div", { class: "nhsuk-width-container" }, h("p", { class: "nhsuk-body-s" }, "carerecord: every access is checked against your choices and logged.")),
      ),
    ),
  );
  return main;
}

function focusHeading(main: HTMLElement): void {
  const heading = main.querySelector<HTMLElement>("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
  document.title = `${heading?.textContent ?? "Care record console"} - Care record console`;
}

function signInPage(main: HTMLElement, reason: string | null): void {
  const start = h("button", { class: "nhsuk-button", type: "button" }, "Sign in");
  start.addEventListener("click", () => void startSignIn());
  replace(main, 
    h("h1", {}, "Sign in to the care record console"),
    reason === "expired"
      ? h("div", { class: "nhsuk-warning-callout", role: "alert" }, h("h2", { class: "nhsuk-warning-callout__label" }, "Your session has ended"), h("p", {}, "For your security you have been signed out. Sign in again to carry on."))
      : null,
    reason && reason !== "expired" ? errorSummary("You could not be signed in", [{ text: reason }]) : null,
    h("p", { class: "nhsuk-body-l" }, "Privacy officers review emergency access and access to restricted records, and check the audit log. Patients see who has looked at their record and choose what they share."),
    config.signIn ? start : errorSummary("Sign-in is not set up", [{ text: "This console has no sign-in configured." }]),
  );
}

async function startSignIn(): Promise<void> {
  const signIn = config.signIn!;
  const verifier = oidc.newVerifier();
  const state = oidc.newState();
  const redirectUri = `${location.origin}/signed-in`;
  session.savePending({ state, verifier, redirectUri });
  const challenge = await oidc.challengeS256(verifier);
  location.assign(oidc.authorizeUrl(signIn, { state, challenge, redirectUri }, location.origin));
}

async function finishSignIn(main: HTMLElement): Promise<void> {
  const pending = session.takePending();
  const callback = oidc.readCallback(location.search, pending?.state ?? null);
  if ("error" in callback || !pending || !config.signIn) {
    history.replaceState(null, "", "/sign-in");
    signInPage(main, "error" in callback ? callback.error : "The sign-in response was not for this browser's request.");
    return;
  }
  const tokenUrl = new URL(config.signIn.tokenUrl, location.origin).toString();
  const response = await fetch(tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: oidc.tokenRequestBody(config.signIn, { code: callback.code, verifier: pending.verifier, redirectUri: pending.redirectUri }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.access_token !== "string") {
    history.replaceState(null, "", "/sign-in");
    signInPage(main, body.error_description ?? "The sign-in service refused the request.");
    return;
  }
  session.save(body.access_token, body.expires_in);
  history.replaceState(null, "", "/");
  await route();
}

async function route(): Promise<void> {
  const path = location.pathname;
  if (path === "/sign-out") {
    session.clear();
    history.replaceState(null, "", "/sign-in");
  }
  const s = session.current();
  const main = layout(s);
  if (location.pathname === "/signed-in") {
    await finishSignIn(main);
    return;
  }
  if (!s) {
    const reason = new URLSearchParams(location.search).get("reason") ?? (session.hadSession() ? "expired" : null);
    session.clear();
    if (location.pathname !== "/sign-in") history.replaceState(null, "", `/sign-in${reason ? `?reason=${reason}` : ""}`);
    signInPage(main, reason);
    focusHeading(main);
    return;
  }
  const home = pagesOf(s)[0]?.[0];
  if (path === "/" || path === "/sign-in") {
    if (home) {
      history.replaceState(null, "", home);
      await route();
    } else {
      replace(main, h("h1", {}, "Nothing to show"), h("p", {}, "This console has pages for privacy officers, clinicians and patients; your account is none of these."));
    }
    return;
  }
  const patient = path.match(/^\/patients\/([^/]+)\/(record-access|sharing)$/);
  try {
    if (path === "/review") await reviewPage(main, s);
    else if (path === "/audit") await auditPage(main);
    else if (path === "/clinician") await clinicianPage(main);
    else if (patient && patient[2] === "record-access") await recordAccessPage(main, decodeURIComponent(patient[1]));
    else if (patient) await sharingPage(main, decodeURIComponent(patient[1]));
    else replace(main, h("h1", {}, "Page not found"), h("p", {}, "If you typed the web address, check it is correct."));
  } catch (error) {
    if (error instanceof SessionEnded) return;
    replace(main, h("h1", {}, "Sorry, there is a problem with the service"), h("p", {}, "Try again later."));
    console.error(error);
  }
  focusHeading(main);
}

whenSessionEnds(() => {
  history.replaceState(null, "", "/sign-in?reason=expired");
  void route();
});

document.addEventListener("click", (e) => {
  const link = (e.target as Element).closest("a");
  if (!link || link.origin !== location.origin || link.target || e.ctrlKey || e.metaKey || e.shiftKey) return;
  if (link.pathname.startsWith("/dev-sign-in")) return;
  e.preventDefault();
  navigate(link.pathname + link.search);
});
window.addEventListener("popstate", () => void route());

async function boot(): Promise<void> {
  try {
    config = (await (await fetch("/config.json")).json()) as Config;
  } catch {
    config = { signIn: null };
  }
  await route();
}

void boot();
