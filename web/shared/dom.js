// DOM helpers shared by the CareThread apps. Text always goes in as text nodes, never as
// HTML: whatever a patient or an EHR stored is shown exactly as typed, never interpreted.

/**
 * Creates an element: h('button', { class: 'primary', onclick: fn }, 'Send').
 * Attributes starting with "on" become listeners; children are strings, nodes, arrays,
 * or null/false (skipped).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.append(child);
    } else {
      parent.append(document.createTextNode(String(child)));
    }
  }
}

/** Replaces the content of `target` (an element or a selector). */
export function render(target, ...children) {
  const element = typeof target === 'string' ? document.querySelector(target) : target;
  element.replaceChildren();
  append(element, children);
  return element;
}

/** "Mar 3, 2026, 2:05 PM" in the browser's locale and time zone. */
export function formatDateTime(value) {
  if (!value) {
    return '';
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatDate(value) {
  if (!value) {
    return '';
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleDateString(undefined, { dateStyle: 'medium' });
}

/**
 * A readable name: a person's (Patient, Practitioner, RelatedPerson: HumanName) or an
 * organization's or pool's (a plain `name`); the reference when there is none.
 */
export function displayName(resource) {
  if (!resource) {
    return '';
  }
  if (typeof resource.name === 'string') {
    return resource.name;
  }
  const name = resource.name?.[0];
  if (!name) {
    return `${resource.resourceType}/${resource.id}`;
  }
  return name.text ?? [...(name.prefix ?? []), ...(name.given ?? []), name.family].filter(Boolean).join(' ');
}

/** A transient status line for screen readers and sighted users alike. */
export function announce(message, kind = 'info') {
  let region = document.getElementById('status');
  if (!region) {
    region = h('div', { id: 'status', role: 'status', 'aria-live': 'polite', class: 'status' });
    document.body.append(region);
  }
  region.className = `status status-${kind}`;
  region.textContent = message;
}

/** Loads /web/config.json: the FHIR base and each app's client. */
export async function loadConfig() {
  const response = await fetch(new URL('/web/config.json', location.href));
  return response.json();
}
