// A clinician's page: read a patient's record by NHS number for their care, or, in an emergency,
// break glass with a reason (a privacy officer reviews every such access).

import { access, describe, SessionEnded } from "../api";
import { banner, errorSummary, h, replace } from "../ui";

export async function clinicianPage(main: HTMLElement): Promise<void> {
  const result = h("div", { id: "read-result" });
  const nhs = h("input", { class: "nhsuk-input nhsuk-input--width-10", id: "nhs-number", name: "nhs-number", type: "text", inputmode: "numeric", autocomplete: "off", "aria-describedby": "nhs-number-hint" }) as HTMLInputElement;
  const reason = h("textarea", { class: "nhsuk-textarea", id: "reason", name: "reason", rows: "2", "aria-describedby": "reason-hint" }) as HTMLTextAreaElement;
  const read = async (emergency: boolean) => {
    result.replaceChildren();
    const number = nhs.value.replace(/\s/g, "");
    if (!/^\d{10}$/.test(number)) {
      result.append(errorSummary("There is a problem", [{ text: "Enter a 10 digit NHS number", href: "#nhs-number" }]));
      return;
    }
    const patient = { reference: { case: "nhsNumber" as const, value: number } };
    try {
      const page = emergency
        ? await access.breakGlassReadPatientRecord({ patient, reason: reason.value })
        : await access.readPatientRecord({ patient, purposeOfUse: "TREAT" });
      const shown = page.records.length;
      const withheld = page.disclosure?.withheldCount ?? 0n;
      result.append(
        banner(`${shown} records shown${withheld > 0n ? `, ${withheld} withheld by the patient's choices or the rules` : ""}. This access is logged (entry ${page.auditIndex}).`),
        h(
          "ul",
          { class: "nhsuk-list nhsuk-list--bullet" },
          ...page.records.map((r) => h("li", {}, `${r.resourceType} ${r.dataClasses.length ? `(${r.dataClasses.join(", ")})` : ""} from ${r.sourceOrganisationOdsCode}`)),
        ),
      );
    } catch (error) {
      if (error instanceof SessionEnded) return;
      result.append(errorSummary("The record was not shown", [{ text: describe(error) }]));
    }
  };
  replace(main, 
    h("h1", { tabindex: "-1" }, "Read a patient's record"),
    h(
      "div",
      { class: "nhsuk-form-group" },
      h("label", { class: "nhsuk-label nhsuk-label--s", for: "nhs-number" }, "NHS number"),
      h("div", { class: "nhsuk-hint", id: "nhs-number-hint" }, "10 digits, for example 999 000 0018"),
      nhs,
    ),
    h("button", { class: "nhsuk-button", type: "button", onclick: () => void read(false) }, "Read for their care"),
    h(
      "details",
      { class: "nhsuk-details" },
      h("summary", { class: "nhsuk-details__summary" }, h("span", { class: "nhsuk-details__summary-text" }, "Emergency access (break glass)")),
      h(
        "div",
        { class: "nhsuk-details__text" },
        h("div", { class: "nhsuk-form-group" }, h("label", { class: "nhsuk-label", for: "reason" }, "Why you need emergency access"), h("div", { class: "nhsuk-hint", id: "reason-hint" }, "At least 10 characters. A privacy officer reviews every emergency access, and the patient sees it."), reason),
        h("button", { class: "nhsuk-button nhsuk-button--warning", type: "button", onclick: () => void read(true) }, "Break glass and read"),
      ),
    ),
    result,
  );
}
