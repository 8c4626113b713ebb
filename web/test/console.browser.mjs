// The web console in a real browser (Debian's Chromium, headless, driven by playwright-core), against
// a running platform. Run by tests/e2e/console.rs, which starts the platform and the console and
// passes:
//   CONSOLE_URL       the console (its development sign-in offers the users below)
//   PATIENT_NHS       the NHS number of the patient, who has a general and a mental-health record
//   PATIENT_LABEL     text of the patient's button on the development sign-in page
//   OTHER_PATIENT_ID  another patient's id, whose pages the patient must not see
//   RESTRICTED_NHS    the NHS number of a restricted patient, every access to whose record is reviewed
//   OUT_DIR           where screenshots go
// One scenario, as people would live it: a clinician breaks glass, and reads a restricted patient's
// record; a privacy officer reviews both and they leave the queue, but not their own emergency
// access, which a second privacy officer reviews, and the queue empties; the audit log is checked in
// the browser, and a tampered proof caught; the patient sees the clinician's access, withholds
// mental-health data from the clinician's organisation, and the clinician's next read withholds it;
// a patient cannot open another patient's page; an expired or refused token leads
// back to sign-in. Every page is checked with axe (WCAG 2.1 A and AA) and photographed.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CONSOLE = env("CONSOLE_URL");
const PATIENT_NHS = env("PATIENT_NHS");
const PATIENT_LABEL = env("PATIENT_LABEL");
const OTHER_PATIENT_ID = env("OTHER_PATIENT_ID");
const RESTRICTED_NHS = env("RESTRICTED_NHS");
const OUT = env("OUT_DIR");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const REASON = `Unconscious in ED, need medication history ${Date.now()}`;

mkdirSync(OUT, { recursive: true });
let passed = 0;
let failed = 0;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed += 1;
    console.log(`not ok - ${name}\n  ${String(error?.stack ?? error).replace(/\n/g, "\n  ")}`);
    throw error;
  }
}

/** axe on the page as it stands: no WCAG 2.1 A/AA violation. */
async function accessible(page, name) {
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }),
  );
  const problems = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
  );
  check(problems.length === 0, `${name}: accessibility violations:\n${problems.join("\n")}`);
}

async function photograph(page, name, fullPage = true) {
  // The focus ring of a heading focused on arrival is for keyboard users, not the picture.
  await page.evaluate(() => document.activeElement?.blur?.());
  await page.screenshot({ path: `${OUT}/${name}.png`, fullPage });
}

async function signIn(page, label) {
  await page.goto(`${CONSOLE}/sign-out`);
  await page.getByRole("heading", { name: "Sign in to the care record console" }).waitFor();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Choose a development user" }).waitFor();
  await page.getByRole("button", { name: new RegExp(`Sign in as .*${label}`) }).click();
  await page.waitForURL((url) => !url.pathname.startsWith("/sign") && !url.pathname.startsWith("/dev-sign-in"));
}

/** The clinician reads the patient's record (in an emergency with a reason); returns the banner text. */
async function clinicianReads(page, emergency, nhsNumber = PATIENT_NHS) {
  await page.getByRole("heading", { name: "Read a patient's record" }).waitFor();
  await page.locator("#read-result").evaluate((el) => el.replaceChildren());
  await page.getByLabel("NHS number").fill(nhsNumber);
  if (emergency) {
    await page.getByText("Emergency access (break glass)").click();
    await page.getByLabel("Why you need emergency access").fill(REASON);
    await page.getByRole("button", { name: "Break glass and read" }).click();
  } else {
    await page.getByRole("button", { name: "Read for their care" }).click();
  }
  const status = page.locator("#read-result [role=status]");
  await status.waitFor();
  return status.innerText();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  // The console's Content-Security-Policy is in force; axe comes in as an init script, which the
  // browser runs outside the page's policy.
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.addInitScript({ path: AXE });
  // Nothing leaves the machine (the NHS font host included): the tests are hermetic.
  await context.route(/^https?:\/\/(?!127\.0\.0\.1|localhost)/, (route) => route.abort());
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) consoleErrors.push(m.text());
  });

  await step("sign-in page", async () => {
    await page.goto(CONSOLE);
    await page.getByRole("heading", { name: "Sign in to the care record console" }).waitFor();
    await accessible(page, "sign-in");
    await photograph(page, "01-sign-in");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Choose a development user" }).waitFor();
    const url = new URL(page.url());
    check(url.searchParams.get("code_challenge_method") === "S256", "PKCE S256 is asked for");
    check(/^[A-Za-z0-9_-]{43}$/.test(url.searchParams.get("code_challenge") ?? ""), "a code challenge is sent");
    check(url.searchParams.get("redirect_uri") === `${CONSOLE}/signed-in`, "the redirect is the console's");
    await accessible(page, "development sign-in");
    await photograph(page, "02-development-sign-in");
  });

  let breakGlassIndex = "";
  await step("a clinician breaks glass", async () => {
    await signIn(page, "clinician");
    const text = await clinicianReads(page, true);
    check(/2 records shown/.test(text), `break glass shows both records: ${text}`);
    breakGlassIndex = text.match(/entry (\d+)/)?.[1] ?? "";
    check(breakGlassIndex !== "", "the access names its audit entry");
    await accessible(page, "clinician");
    await photograph(page, "03-clinician");
    // A restricted patient's record: an ordinary read, reviewed all the same.
    const restricted = await clinicianReads(page, false, RESTRICTED_NHS);
    check(/0 records shown/.test(restricted), `the restricted patient's read: ${restricted}`);
  });

  await step("the privacy officer reviews it and it leaves the queue", async () => {
    await signIn(page, "Priya Shah, privacy officer");
    await page.getByRole("heading", { name: "Access to review" }).waitFor();
    const card = page.locator("section.nhsuk-card", { hasText: REASON });
    await card.waitFor();
    const text = await card.innerText();
    check(text.includes("Dr Alex Example"), "the card names who broke glass");
    check(text.includes("Emergency access (break glass)"), `the card says why it needs review: ${text}`);
    await accessible(page, "review queue");
    await photograph(page, "04-review-queue");
    // Notes are required for a follow-up: the form says so before anything is sent.
    await card.getByLabel("Follow-up required").check();
    await card.getByRole("button", { name: "Record review" }).click();
    await page.getByRole("alert").filter({ hasText: "Enter notes explaining your review" }).waitFor();
    await card.getByLabel("Appropriate", { exact: true }).check();
    await card.getByLabel("Notes").fill("Confirmed with the ED consultant: the patient was unconscious.");
    await card.getByRole("button", { name: "Record review" }).click();
    await page.getByRole("status").filter({ hasText: "Review recorded" }).waitFor();
    await card.waitFor({ state: "detached", timeout: 10_000 });
    // The restricted patient's read is in the queue too, saying why.
    const restricted = page.locator("section.nhsuk-card", { hasText: "Access to a restricted record by Dr Alex Example" });
    check((await restricted.count()) === 1, "the restricted patient's read is queued once");
    check((await restricted.innerText()).includes("The patient's record is restricted"), "it says why");
    await restricted.getByLabel("Follow-up required").check();
    await restricted.getByLabel("Notes").fill("Asked the clinician's line manager why this record was read.");
    await restricted.getByRole("button", { name: "Record review" }).click();
    // The queue is read again: the reviewed card goes (the banner is already there from the first).
    await restricted.waitFor({ state: "detached", timeout: 10_000 });
    // Left: the officer's own emergency access (made before the test as a clinician), not theirs
    // to review.
    const own = page.locator("section.nhsuk-card", { hasText: "Covering the ED shift" });
    check((await own.innerText()).includes("This is your own access"), "one's own access says so");
    check((await own.getByRole("button", { name: "Record review" }).count()) === 0, "and has no review form");
    check((await page.locator("section.nhsuk-card").count()) === 1, "only one's own access is left");
    await photograph(page, "05-review-recorded");
  });

  await step("another privacy officer reviews the first one's access and the queue empties", async () => {
    await signIn(page, "Sam Jones, privacy officer");
    const card = page.locator("section.nhsuk-card", { hasText: "Covering the ED shift" });
    await card.getByLabel("Inappropriate").check();
    await card.getByLabel("Notes").fill("Not on the ED rota that day: referred to the Caldicott Guardian.");
    await card.getByRole("button", { name: "Record review" }).click();
    await page.getByText("There is no access waiting for review.").waitFor();
    check((await page.locator("section.nhsuk-card").count()) === 0, "the queue is empty");
    await accessible(page, "empty review queue");
  });

  await step("the privacy officer verifies the audit log in the browser", async () => {
    await page.getByRole("link", { name: "Audit log" }).click();
    await page.getByRole("heading", { name: "Verified: the tree head's signature" }).waitFor();
    await page.getByLabel("Entry to check").fill(breakGlassIndex);
    await page.getByRole("button", { name: "Check entry" }).click();
    await page.getByRole("heading", { name: `Verified: entry ${breakGlassIndex}` }).waitFor();
    const result = await page.locator("#entry-result").innerText();
    check(result.includes("break glass read"), `the entry is the break-glass read: ${result}`);
    await accessible(page, "audit");
    await photograph(page, "06-audit");
    // A tampered answer is caught: flip a byte of every inclusion proof the server sends.
    await page.route("**/GetInclusionProof", async (route) => {
      const response = await route.fetch();
      const body = Buffer.from(await response.body());
      body[12] ^= 0xff;
      await route.fulfill({ response, body });
    });
    await page.getByRole("button", { name: "Check entry" }).click();
    await page.getByRole("heading", { name: `Verification failed: entry ${breakGlassIndex}` }).waitFor();
    await photograph(page, "07-audit-tampered");
    await page.unroute("**/GetInclusionProof");
  });

  let patientPath = "";
  await step("the patient sees the clinician's access in plain words", async () => {
    await signIn(page, PATIENT_LABEL);
    await page.getByRole("heading", { name: "Who has seen your record" }).waitFor();
    patientPath = new URL(page.url()).pathname.replace(/\/record-access$/, "");
    const table = await page.locator("table").innerText();
    check(
      table.includes("Dr Alex Example at Leeds Teaching Hospitals (RR8) used emergency access to read your record in an emergency: 2 records"),
      `the break glass is listed: ${table}`,
    );
    check(table.includes(REASON), "with the reason given");
    // The first screenful: the log runs to two pages.
    await photograph(page, "08-record-access", false);
    // The log runs to more than a page: older entries come a page at a time.
    const rows = page.locator("table tbody tr");
    check((await rows.count()) === 50, `a first page of 50 entries, not ${await rows.count()}`);
    await page.getByRole("button", { name: "Show older entries" }).click();
    await page.waitForFunction(() => document.querySelectorAll("table tbody tr").length > 50);
    check((await page.getByRole("button", { name: "Show older entries" }).count()) === 0, "and then no more");
    check((await page.locator("table").innerText()).includes("looked up your details for your care"), "earlier lookups are listed");
    await accessible(page, "who has seen your record");
  });

  await step("the patient withholds mental-health data from the clinician's organisation", async () => {
    await page.getByRole("link", { name: "Your sharing choices" }).click();
    await page.getByRole("heading", { name: "Your sharing choices" }).waitFor();
    await page.getByRole("button", { name: "Stop sharing" }).click();
    await page.getByRole("alert").filter({ hasText: "Select the information you do not want to share" }).waitFor();
    await accessible(page, "sharing choices with errors");
    await page.getByLabel("Mental health").check();
    await page.getByLabel("Which organisation should not see it?").fill("rr8");
    await page.getByRole("button", { name: "Stop sharing" }).click();
    await page.getByRole("status").filter({ hasText: "Saved: you do not share mental health information with Leeds Teaching Hospitals (RR8)" }).waitFor();
    const list = await page.locator("ul.nhsuk-list--border").innerText();
    check(list.includes("You do not share mental health information with Leeds Teaching Hospitals (RR8)"), list);
    check((await page.locator("dl").innerText()).includes("Your choice"), "the opt-out status is shown");
    await accessible(page, "sharing choices");
    await photograph(page, "09-sharing");
  });

  await step("a patient cannot open another patient's pages", async () => {
    await page.goto(`${CONSOLE}/patients/${OTHER_PATIENT_ID}/record-access`);
    await page.getByText("You can only see your own record").waitFor();
    await page.goto(`${CONSOLE}/patients/${OTHER_PATIENT_ID}/sharing`);
    await page.getByText("You can only see your own record").waitFor();
    await accessible(page, "another patient's page");
    await photograph(page, "10-another-patient");
  });

  await step("the clinician's next read withholds the mental-health record", async () => {
    await signIn(page, "clinician");
    const text = await clinicianReads(page, false);
    check(/1 records shown, 1 withheld/.test(text), `one record withheld: ${text}`);
  });

  await step("the patient withdraws the choice", async () => {
    await signIn(page, PATIENT_LABEL);
    await page.goto(`${CONSOLE}${patientPath}/sharing`);
    await page.getByRole("button", { name: /^Withdraw/ }).click();
    await page.getByRole("status").filter({ hasText: "Withdrawn" }).waitFor();
    check((await page.getByText("You share all your information").count()) === 1, "nothing is withheld any more");
  });

  await step("a token the front door refuses leads back to sign-in", async () => {
    await page.evaluate(() => {
      const stored = JSON.parse(sessionStorage.getItem("carerecord.session"));
      const [head, body] = stored.token.split(".");
      stored.token = `${head}.${body}.AAAA`;
      sessionStorage.setItem("carerecord.session", JSON.stringify(stored));
    });
    await page.goto(`${CONSOLE}${patientPath}/record-access`);
    await page.getByRole("heading", { name: "Your session has ended" }).waitFor();
    check(new URL(page.url()).pathname === "/sign-in", "back at sign-in");
  });

  await step("an expired token leads back to sign-in", async () => {
    await page.clock.install();
    await signIn(page, PATIENT_LABEL);
    await page.getByRole("heading", { name: "Who has seen your record" }).waitFor();
    await page.clock.fastForward("02:00:00");
    await page.getByRole("link", { name: "Your sharing choices" }).click();
    await page.getByRole("heading", { name: "Your session has ended" }).waitFor();
    await accessible(page, "session ended");
    await photograph(page, "11-session-ended");
  });

  check(consoleErrors.length === 0, `errors in the page: ${consoleErrors.join("; ")}`);
} finally {
  await browser.close();
  console.log(`${passed} passed, ${failed} failed`);
}
process.exit(failed === 0 ? 0 : 1);
