// Names for references, looked up once per page: who sent a message, whose role, which
// pool. Shared by the apps; each says how it names the signed-in user and a role.
import { displayName } from '/web/dom.js';

export class NameBook {
  /**
   * @param get       reads a reference with the app's token (`Practitioner/…` → resource)
   * @param options   `me` (the signed-in user's reference) and `meName` (what to call them,
   *                  or undefined to look them up), `role(name)` (how a PractitionerRole
   *                  reads, given its practitioner's name), `fallback(reference, display)`
   *                  (when the lookup fails)
   */
  constructor(get, { me, meName, role = (name) => name, fallback = (reference, display) => display ?? reference } = {}) {
    this.get = get;
    this.options = { me, meName, role, fallback };
    this.cache = new Map();
  }

  /** Records a name already known (from a search), sparing a lookup. */
  remember(reference, name) {
    this.cache.set(reference, Promise.resolve(name));
  }

  /** Display names by reference; `displays` are the references' own `display`, used as fallbacks. */
  async names(references, displays = new Map()) {
    const unique = [...new Set(references.filter(Boolean))];
    const entries = await Promise.all(
      unique.map(async (reference) => {
        if (!this.cache.has(reference)) {
          this.cache.set(reference, this.lookUp(reference, displays.get(reference)));
        }
        return [reference, await this.cache.get(reference)];
      })
    );
    return new Map(entries);
  }

  async lookUp(reference, display) {
    const { me, meName, role, fallback } = this.options;
    if (reference === 'Organization/carethread') {
      return display ?? 'CareThread';
    }
    if (reference === me && meName) {
      return meName;
    }
    try {
      const resource = await this.get(reference);
      if (resource.resourceType === 'PractitionerRole' && resource.practitioner?.reference) {
        return role((await this.names([resource.practitioner.reference])).get(resource.practitioner.reference));
      }
      return displayName(resource);
    } catch {
      return fallback(reference, display);
    }
  }
}
