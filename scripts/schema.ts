/** Regenerates the generated migrations from the search catalog (`npm run schema`). */
import fs from 'node:fs';
import { resourceTablesDdl } from '../fhir/schema/ddl.js';
import { sortedIndexesDdl } from '../fhir/search/sorted-indexes.js';

const files: [string, string][] = [
  ['0001_resources.sql', resourceTablesDdl()],
  ['0002_sorted_reference_indexes.sql', sortedIndexesDdl()],
];
for (const [name, sql] of files) {
  const target = new URL(`../fhir/schema/migrations/${name}`, import.meta.url);
  fs.writeFileSync(target, sql);
  console.log(`wrote ${target.pathname}`);
}
