// A patient's pages: who has seen or added to their record, in plain words, newest first; and their
// sharing choices (withholding a kind of information from an organisation, withdrawing that) with
// their national data opt-out status.

import {
  ConsentDirectiveDecision,
  ConsentDirectiveStatus,
  NationalDataOptOutStatus,
  type ConsentDirective,
  type Disclosure,
} from "../gen/carerecord/access/v1/access_pb";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { access, describe, reasonOf, SessionEnded } from "../api";
import { append, banner, errorSummary, h, summaryList, when, replace } from "../ui";
import { DATA_CLASSES, dataClass, disclosureSentence, organisation } from "../words";

const reference = (patientId: string) => ({ reference: { case: "patientId" as const, value: patientId } });

/** A refusal shown in place of the page (another patient's page, an unknown patient). */
function refusal(main: HTMLElement, title: string, error: unknown): void {
  const text =
    reasonOf(error) === "PATIENT_CONTEXT_MISMATCH"
      ? "You can only see your own record. This page is about another patient, so it cannot be shown."
      : describe(error);
  replace(main, h("h1", { tabindex: "-1" }, title), errorSummary("You cannot view this page", [{ text }]));
}

/** One row of "who has seen your record". */
function disclosureRow(d: Disclosure, patientId: string): HTMLElement {
  return h(
    "tr",
    { class: "nhsuk-table__row" },
    h("td", { class: "nhsuk-table__cell" }, when(d.time)),
    h(
      "td",
      { class: "nhsuk-table__cell" },
      disclosureSentence(d, patientId),
      d.breakGlassReason ? h("span", { class: "nhsuk-body-s nhsuk-u-display-block" }, `Reason given: ${d.breakGlassReason}`) : null,
    ),
  );
}

export async function recordAccessPage(main: HTMLElement, patientId: string): Promise<void> {
  const PAGE = 50;
  let response;
  try {
    response = await access.listDisclosures({ patient: reference(patientId), pageSize: PAGE });
  } catch (error) {
    if (error instanceof SessionEnded) throw error;
    refusal(main, "Who has seen your record", error);
    return;
  }
  const resolved = response.patientId;
  const body = h("tbody", { class: "nhsuk-table__body" }, ...response.disclosures.map((d) => disclosureRow(d, resolved)));
  const more = h("div", {});
  // Older entries, a page at a time.
  const offerMore = (token: string) => {
    replace(more);
    if (!token) return;
    const button = h("button", { class: "nhsuk-button nhsuk-button--secondary", type: "button" }, "Show older entries");
    button.addEventListener("click", async () => {
      try {
        const next = await access.listDisclosures({ patient: reference(patientId), pageSize: PAGE, pageToken: token });
        append(body, ...next.disclosures.map((d) => disclosureRow(d, resolved)));
        offerMore(next.nextPageToken);
      } catch (error) {
        if (error instanceof SessionEnded) return;
        replace(more, errorSummary("Older entries could not be shown", [{ text: describe(error) }]));
      }
    });
    append(more, button);
  };
  offerMore(response.nextPageToken);
  replace(
    main,
    h("h1", { tabindex: "-1" }, "Who has seen your record"),
    h(
      "p",
      { class: "nhsuk-body-l" },
      "Every time someone looks at your record, or adds to it, it is logged. This is everything logged, newest first.",
    ),
    response.disclosures.length === 0
      ? h("p", {}, "Nobody has looked at your record yet.")
      : h(
          "table",
          { class: "nhsuk-table" },
          h("caption", { class: "nhsuk-table__caption" }, "Access to your record"),
          h(
            "thead",
            { class: "nhsuk-table__head" },
            h(
              "tr",
              { class: "nhsuk-table__row" },
              h("th", { class: "nhsuk-table__header", scope: "col" }, "When"),
              h("th", { class: "nhsuk-table__header", scope: "col" }, "What happened"),
            ),
          ),
          body,
        ),
    more,
  );
}

/** A directive in words: "You do not share mental health information with Leeds Teaching Hospitals (RR8)". */
function directiveWords(d: ConsentDirective): string {
  const simple =
    d.decision === ConsentDirectiveDecision.PERMIT &&
    d.scopePurposes.length === 0 &&
    d.provisions.length > 0 &&
    d.provisions.every((p) => p.provisions.length === 0 && p.purposes.length === 0 && p.studyIds.length === 0);
  if (!simple) {
    return d.policyText || `A sharing choice recorded on ${when(d.createTime)}`;
  }
  return d.provisions
    .map((p) => {
      const what = p.dataClasses.length ? `${p.dataClasses.map(dataClass).join(" or ")} information` : "any information";
      const whom = p.actors.length
        ? p.actors.map((a) => (a.organisationOdsCode ? organisation(a.organisationOdsCode) : a.userId || a.roleCode)).join(" or ")
        : "anyone";
      return `You do not share ${what} with ${whom}`;
    })
    .join(". ");
}

function optOutWords(status: NationalDataOptOutStatus): string {
  switch (status) {
    case NationalDataOptOutStatus.OPTED_OUT:
      return "You have opted out. Your information is used for your care, but not for research or planning.";
    case NationalDataOptOutStatus.NOT_OPTED_OUT:
      return "You have not opted out. Your information may be used for research and planning, as well as your care.";
    default:
      return "We have not been able to check your choice recently, so your information is not used for research or planning until it is checked.";
  }
}

export async function sharingPage(main: HTMLElement, patientId: string, message?: string): Promise<void> {
  let directives;
  let optOut;
  try {
    directives = (await access.listConsentDirectives({ patient: reference(patientId), pageSize: 100 })).directives;
    optOut = await access.getNationalDataOptOut({ patient: reference(patientId) });
  } catch (error) {
    if (error instanceof SessionEnded) throw error;
    refusal(main, "Your sharing choices", error);
    return;
  }
  const rerender = (text: string) => sharingPage(main, patientId, text).catch(() => {});
  const active = directives.filter((d) => d.status === ConsentDirectiveStatus.ACTIVE);
  const earlier = directives.filter((d) => d.status !== ConsentDirectiveStatus.ACTIVE);
  const errors = h("div", {});

  const withdraw = (d: ConsentDirective) =>
    h(
      "form",
      {
        novalidate: true,
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            await access.revokeConsentDirective({
              requestId: crypto.randomUUID(),
              directiveId: d.directiveId,
              etag: d.etag,
              reason: "Withdrawn by the patient in the care record console",
            });
            await rerender(`Withdrawn: ${directiveWords(d)}.`);
          } catch (error) {
            if (error instanceof SessionEnded) return;
            errors.replaceChildren(errorSummary("Your choice was not changed", [{ text: describe(error) }]));
          }
        },
      },
      h("button", { class: "nhsuk-button nhsuk-button--secondary nhsuk-u-margin-bottom-0", type: "submit" }, "Withdraw", h("span", { class: "nhsuk-u-visually-hidden" }, `: ${directiveWords(d)}`)),
    );

  const classError = h("span", { class: "nhsuk-error-message", id: "data-class-error", hidden: true });
  const orgError = h("span", { class: "nhsuk-error-message", id: "organisation-error", hidden: true });
  const org = h("input", {
    class: "nhsuk-input nhsuk-input--width-10",
    id: "organisation",
    name: "organisation",
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "organisation-hint organisation-error",
  }) as HTMLInputElement;
  const form = h(
    "form",
    { novalidate: true },
    h(
      "div",
      { class: "nhsuk-form-group" },
      h(
        "fieldset",
        { class: "nhsuk-fieldset", "aria-describedby": "data-class-error" },
        h("legend", { class: "nhsuk-fieldset__legend nhsuk-fieldset__legend--s" }, "What information do you not want to share?"),
        classError,
        h(
          "div",
          { class: "nhsuk-radios" },
          ...DATA_CLASSES.map(([code, label], i) =>
            h(
              "div",
              { class: "nhsuk-radios__item" },
              h("input", { class: "nhsuk-radios__input", id: `data-class-${i}`, name: "data-class", type: "radio", value: code }),
              h("label", { class: "nhsuk-label nhsuk-radios__label", for: `data-class-${i}` }, label),
            ),
          ),
        ),
      ),
    ),
    h(
      "div",
      { class: "nhsuk-form-group" },
      h("label", { class: "nhsuk-label nhsuk-label--s", for: "organisation" }, "Which organisation should not see it?"),
      h("div", { class: "nhsuk-hint", id: "organisation-hint" }, "Its ODS code, for example RR8 for Leeds Teaching Hospitals. You can find it on letters from them."),
      orgError,
      org,
    ),
    h("button", { class: "nhsuk-button", type: "submit" }, "Stop sharing"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = form.querySelector<HTMLInputElement>('input[name="data-class"]:checked')?.value;
    const code = org.value.trim().toUpperCase();
    const problems: { text: string; href: string }[] = [];
    classError.hidden = !!chosen;
    classError.textContent = "Error: Select the information you do not want to share";
    orgError.hidden = /^[A-Z0-9]{3,10}$/.test(code);
    orgError.textContent = "Error: Enter an ODS code of 3 to 10 letters and numbers";
    if (!chosen) problems.push({ text: "Select the information you do not want to share", href: "#data-class-0" });
    if (!orgError.hidden) problems.push({ text: "Enter an ODS code of 3 to 10 letters and numbers", href: "#organisation" });
    if (problems.length) {
      const summary = errorSummary("There is a problem", problems);
      errors.replaceChildren(summary);
      summary.focus();
      return;
    }
    try {
      await access.createConsentDirective({
        requestId: crypto.randomUUID(),
        patient: reference(patientId),
        directive: {
          decision: ConsentDirectiveDecision.PERMIT,
          provisions: [{ actors: [{ organisationOdsCode: code }], dataClasses: [chosen!] }],
          dateTime: timestampNow(),
          policyText: `Do not share ${dataClass(chosen!)} information with ${code}`,
        },
      });
      await rerender(`Saved: you do not share ${dataClass(chosen!)} information with ${organisation(code)}.`);
    } catch (error) {
      if (error instanceof SessionEnded) return;
      const summary = errorSummary("Your choice was not saved", [{ text: describe(error) }]);
      errors.replaceChildren(summary);
      summary.focus();
    }
  });

  replace(main, 
    h("h1", { tabindex: "-1" }, "Your sharing choices"),
    message ? banner(message) : null,
    errors,
    h("h2", {}, "Information you do not share"),
    active.length === 0
      ? h("p", {}, "You share all your information with the people caring for you.")
      : h(
          "ul",
          { class: "nhsuk-list nhsuk-list--border" },
          ...active.map((d) =>
            h("li", {}, h("p", { class: "nhsuk-u-margin-bottom-2" }, `${directiveWords(d)}.`, h("span", { class: "nhsuk-body-s nhsuk-u-display-block" }, `Since ${when(d.createTime)}`)), withdraw(d)),
          ),
        ),
    h("h2", {}, "Stop sharing some information"),
    form,
    h("h2", {}, "Research and planning: the national data opt-out"),
    summaryList([
      ["Your choice", optOutWords(optOut.status)],
      ["Last checked", optOut.checkTime ? when(optOut.checkTime) : "Never"],
    ]),
    h(
      "p",
      {},
      "You can change this choice with NHS England: ",
      h("a", { href: "https://www.nhs.uk/your-nhs-data-matters/" }, "choose if your data is used for research and planning"),
      ".",
    ),
    earlier.length
      ? h(
          "details",
          { class: "nhsuk-details" },
          h("summary", { class: "nhsuk-details__summary" }, h("span", { class: "nhsuk-details__summary-text" }, "Earlier choices")),
          h(
            "div",
            { class: "nhsuk-details__text" },
            h("ul", { class: "nhsuk-list" }, ...earlier.map((d) => h("li", {}, `${directiveWords(d)}: withdrawn ${when(d.revokeTime)}${d.revocationReason ? ` (${d.revocationReason})` : ""}.`))),
          ),
        )
      : null,
  );
}
