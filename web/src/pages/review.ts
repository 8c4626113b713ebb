// The privacy officer's queue: break-glass events and accesses to restricted patients' records
// waiting for review, each with why, who, when, what was disclosed and the reason given; a review
// records an outcome and notes, and the event leaves the queue. A privacy officer cannot review their
// own access.

import {
  AuditOutcome,
  ReviewEventKind,
  BreakGlassReviewFilter,
  BreakGlassReviewOutcome,
  type BreakGlassEvent,
} from "../gen/carerecord/access/v1/access_pb";
import { access, describe, SessionEnded } from "../api";
import type { Session } from "../session";
import { banner, errorSummary, h, summaryList, when, replace } from "../ui";
import { organisation } from "../words";

const OUTCOMES: [BreakGlassReviewOutcome, string, string][] = [
  [BreakGlassReviewOutcome.APPROPRIATE, "Appropriate", "The access was justified."],
  [BreakGlassReviewOutcome.INAPPROPRIATE, "Inappropriate", "The access was not justified. Notes are required."],
  [BreakGlassReviewOutcome.FOLLOW_UP_REQUIRED, "Follow-up required", "More information is needed. Notes are required."],
];

function outcomeWords(outcome: AuditOutcome): string {
  switch (outcome) {
    case AuditOutcome.DISCLOSED:
      return "Records were shown";
    case AuditOutcome.REFUSED:
      return "Refused: nothing was shown";
    default:
      return "Failed: nothing was shown";
  }
}

function eventCard(event: BreakGlassEvent, me: Session, done: (message: string) => void): HTMLElement {
  const r = event.requester;
  const name = r?.displayName || r?.userId || "Unknown user";
  const id = event.eventId;
  const restricted = event.kind === ReviewEventKind.RESTRICTED_PATIENT;
  const why = restricted
    ? "The patient's record is restricted: every access to it is reviewed"
    : event.restrictedPatient
      ? "Emergency access (break glass) to a restricted patient's record"
      : "Emergency access (break glass)";
  const rows: [string, string][] = [
    ["Why it needs review", why],
    ["Who", `${name} (user ${r?.userId ?? "unknown"}, role ${r?.roleCode || "none"}) at ${organisation(r?.organisationOdsCode ?? "")}`],
    ["When", when(event.time)],
    ["Patient", event.patientId || "Not resolved"],
    ["What was disclosed", `${event.returnedCount} records shown, ${event.withheldCount} withheld`],
    ["Outcome", outcomeWords(event.outcome)],
    ["Reason given", event.reason || "None: this was not an emergency access"],
    ["Application", event.clientId],
  ];
  const card = h(
    "section",
    { class: "nhsuk-card", "aria-labelledby": `event-${id}` },
    h(
      "div",
      { class: "nhsuk-card__content" },
      h(
        "h2",
        { class: "nhsuk-card__heading nhsuk-heading-m", id: `event-${id}` },
        restricted ? `Access to a restricted record by ${name}` : `Emergency access by ${name}`,
      ),
      summaryList(rows),
    ),
  );
  const content = card.firstElementChild as HTMLElement;
  if (r?.userId === me.claims.sub) {
    content.append(
      h("div", { class: "nhsuk-inset-text" }, h("p", {}, "This is your own access. Another privacy officer must review it.")),
    );
    return card;
  }
  const errors = h("div", {});
  const notesId = `notes-${id}`;
  const notesError = h("span", { class: "nhsuk-error-message", id: `${notesId}-error`, hidden: true });
  const outcomeError = h("span", { class: "nhsuk-error-message", id: `outcome-${id}-error`, hidden: true });
  const notes = h("textarea", {
    class: "nhsuk-textarea",
    id: notesId,
    name: "notes",
    rows: "3",
    "aria-describedby": `${notesId}-hint`,
  }) as HTMLTextAreaElement;
  const form = h(
    "form",
    { novalidate: true, "aria-label": `Review of the access by ${name}` },
    errors,
    h(
      "div",
      { class: "nhsuk-form-group" },
      h(
        "fieldset",
        { class: "nhsuk-fieldset", "aria-describedby": `outcome-${id}-error` },
        h("legend", { class: "nhsuk-fieldset__legend nhsuk-fieldset__legend--s" }, "Was this access appropriate?"),
        outcomeError,
        h(
          "div",
          { class: "nhsuk-radios" },
          ...OUTCOMES.map(([value, label, hint], i) =>
            h(
              "div",
              { class: "nhsuk-radios__item" },
              h("input", {
                class: "nhsuk-radios__input",
                id: `outcome-${id}-${i}`,
                name: `outcome-${id}`,
                type: "radio",
                value: String(value),
                "aria-describedby": `outcome-${id}-${i}-hint`,
              }),
              h("label", { class: "nhsuk-label nhsuk-radios__label", for: `outcome-${id}-${i}` }, label),
              h("div", { class: "nhsuk-hint nhsuk-radios__hint", id: `outcome-${id}-${i}-hint` }, hint),
            ),
          ),
        ),
      ),
    ),
    h(
      "div",
      { class: "nhsuk-form-group" },
      h("label", { class: "nhsuk-label", for: notesId }, "Notes"),
      h("div", { class: "nhsuk-hint", id: `${notesId}-hint` }, "What you found out. Required unless the access was appropriate."),
      notesError,
      notes,
    ),
    h("button", { class: "nhsuk-button", type: "submit" }, "Record review"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = form.querySelector<HTMLInputElement>(`input[name="outcome-${id}"]:checked`);
    const outcome = chosen ? (Number(chosen.value) as BreakGlassReviewOutcome) : BreakGlassReviewOutcome.UNSPECIFIED;
    const problems: { text: string; href: string }[] = [];
    outcomeError.hidden = true;
    notesError.hidden = true;
    if (outcome === BreakGlassReviewOutcome.UNSPECIFIED) {
      problems.push({ text: "Select whether the access was appropriate", href: `#outcome-${id}-0` });
      outcomeError.textContent = "Error: Select whether the access was appropriate";
      outcomeError.hidden = false;
    } else if (outcome !== BreakGlassReviewOutcome.APPROPRIATE && !notes.value.trim()) {
      problems.push({ text: "Enter notes explaining your review", href: `#${notesId}` });
      notesError.textContent = "Error: Enter notes explaining your review";
      notesError.hidden = false;
    }
    errors.replaceChildren();
    if (problems.length) {
      const summary = errorSummary("There is a problem", problems);
      errors.append(summary);
      summary.focus();
      return;
    }
    try {
      await access.reviewBreakGlassEvent({ eventId: id, etag: event.etag, outcome, notes: notes.value });
      done(`Review recorded for the access by ${name}.`);
    } catch (error) {
      if (error instanceof SessionEnded) return;
      const summary = errorSummary("The review was not recorded", [{ text: describe(error) }]);
      errors.append(summary);
      summary.focus();
    }
  });
  content.append(form);
  return card;
}

export async function reviewPage(main: HTMLElement, me: Session, message?: string): Promise<void> {
  const response = await access.listBreakGlassEvents({
    reviewFilter: BreakGlassReviewFilter.UNREVIEWED,
    pageSize: 100,
  });
  const events = response.events;
  const rerender = (text: string) => {
    reviewPage(main, me, text).catch(() => {});
  };
  replace(main, 
    h("h1", { tabindex: "-1" }, "Access to review"),
    message ? banner(message) : null,
    h(
      "p",
      { class: "nhsuk-body-l" },
      events.length === 0
        ? "There is no access waiting for review."
        : events.length === 1
          ? "1 access is waiting for review: emergency access (break glass) and every access to a restricted patient's record are reviewed."
          : `${events.length} accesses are waiting for review, oldest first: emergency access (break glass) and every access to a restricted patient's record are reviewed.`,
    ),
    ...events.map((event) => eventCard(event, me, rerender)),
    response.nextPageToken
      ? h("p", {}, `These are the oldest ${events.length}. More are waiting: review these to see them.`)
      : null,
  );
}
