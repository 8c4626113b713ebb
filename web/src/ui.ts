// A few DOM helpers: elements built with text (never HTML strings), so nothing from a response can
// become markup.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | undefined | ((e: Event) => void)>;

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.replace(/^on/, ""), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, value);
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces `el`'s children (skipping the absent ones). */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, ...children);
}

/** An NHS summary list of [key, value] rows. */
export function summaryList(rows: [string, Child][]): HTMLElement {
  return h(
    "dl",
    { class: "nhsuk-summary-list" },
    ...rows.map(([key, value]) =>
      h(
        "div",
        { class: "nhsuk-summary-list__row" },
        h("dt", { class: "nhsuk-summary-list__key" }, key),
        h("dd", { class: "nhsuk-summary-list__value" }, value),
      ),
    ),
  );
}

/** An NHS error summary, focused so screen readers announce it. */
export function errorSummary(title: string, items: { text: string; href?: string }[]): HTMLElement {
  const summary = h(
    "div",
    { class: "nhsuk-error-summary", "aria-labelledby": "error-summary-title", role: "alert", tabindex: "-1" },
    h("h2", { class: "nhsuk-error-summary__title", id: "error-summary-title" }, title),
    h(
      "div",
      { class: "nhsuk-error-summary__body" },
      h(
        "ul",
        { class: "nhsuk-list nhsuk-error-summary__list" },
        ...items.map((item) => h("li", {}, item.href ? h("a", { href: item.href }, item.text) : item.text)),
      ),
    ),
  );
  return summary;
}

/** A success or information banner. */
export function banner(text: string): HTMLElement {
  return h(
    "div",
    { class: "nhsuk-inset-text", role: "status" },
    h("span", { class: "nhsuk-u-visually-hidden" }, "Information: "),
    h("p", {}, text),
  );
}

const dateFormat = new Intl.DateTimeFormat("en-GB", {
  dateStyle: "long",
  timeStyle: "short",
  timeZone: "Europe/London",
});

/** A protobuf Timestamp as people read it in the UK. */
export function when(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (!ts) return "an unknown time";
  return dateFormat.format(new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)));
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
