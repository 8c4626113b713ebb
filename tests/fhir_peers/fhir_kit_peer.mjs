// The FHIR gateway as fhir-kit-client (a FHIR client nobody on this project wrote) uses it: the
// capability statement, SMART discovery, search with paging, history, $everything, and a Bulk Data
// export driven to completion with its NDJSON files downloaded.
//
// Run by tests/e2e/fhir_peers.rs against a sandbox platform, with FHIR_BASE (the gateway),
// FHIR_TOKEN (a clinician's token), RESEARCH_TOKEN (a research system's token), PATIENT_ID (a
// patient with OBSERVATIONS Observations, one of them updated once), PROJECT (a research project)
// and EXPORT_COUNT (how many Observations the export should hold). Exits non-zero, saying what went
// wrong, on the first failed expectation.

import { Client } from 'fhir-kit-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('FHIR_BASE');
const patientId = env('PATIENT_ID');
const observations = Number(env('OBSERVATIONS'));
const exportCount = Number(env('EXPORT_COUNT'));

function expect(condition, message) {
  if (!condition) throw new Error(typeof message === 'string' ? message : JSON.stringify(message));
}

async function main() {
  const client = new Client({ baseUrl: base, bearerToken: env('FHIR_TOKEN') });

  const statement = await client.capabilityStatement();
  expect(statement.resourceType === 'CapabilityStatement' && statement.fhirVersion === '4.0.1', statement);
  const observation = statement.rest[0].resource.find((r) => r.type === 'Observation');
  expect(observation.searchParam.some((p) => p.name === 'patient'), observation);

  // SMART discovery: the library's own lookup, and the well-known document it prefers.
  const smart = await client.smartAuthMetadata();
  const tokenUrl = String(smart.tokenUrl);
  expect(tokenUrl.startsWith('http'), smart);
  const wellKnown = await client.request('.well-known/smart-configuration');
  expect(wellKnown.token_endpoint === tokenUrl, { wellKnown, tokenUrl });
  expect(wellKnown.capabilities.includes('permission-v2'), wellKnown);

  // Search, two a page, following next links with the library's pagination.
  let page = await client.resourceSearch({
    resourceType: 'Observation',
    searchParams: { patient: patientId, _count: 2 },
  });
  const found = [];
  let pages = 0;
  while (page) {
    pages += 1;
    expect(page.resourceType === 'Bundle' && page.type === 'searchset', page);
    for (const entry of page.entry ?? []) found.push(entry.resource);
    page = await client.nextPage({ bundle: page });
  }
  expect(found.length === observations, `found ${found.length} of ${observations}`);
  expect(pages === Math.ceil(observations / 2), `pages ${pages}`);
  expect(new Set(found.map((o) => o.id)).size === observations, 'no duplicates across pages');

  // Read and history of the updated one.
  const updated = found.find((o) => o.meta.versionId === '2');
  expect(updated, 'one Observation was updated');
  const read = await client.read({ resourceType: 'Observation', id: updated.id });
  expect(read.id === updated.id, read);
  expect(Client.httpFor(read).response.headers.get('etag') === 'W/"2"', 'ETag of a read');
  const history = await client.resourceHistory({ resourceType: 'Observation', id: updated.id });
  expect(history.type === 'history', history);
  expect(history.entry.map((e) => e.resource.meta.versionId).join() === '2,1', history);
  const first = await client.vread({ resourceType: 'Observation', id: updated.id, version: '1' });
  expect(first.meta.versionId === '1', first);

  // $everything.
  const everything = await client.operation({
    name: '$everything',
    resourceType: 'Patient',
    id: patientId,
    method: 'GET',
  });
  const types = everything.entry.map((e) => e.resource.resourceType);
  expect(types[0] === 'Patient' && types.length === observations + 1, types);

  // Errors are OperationOutcomes.
  try {
    await client.read({ resourceType: 'Observation', id: '00000000-0000-4000-8000-000000000000' });
    throw new Error('a missing record was read');
  } catch (e) {
    expect(e.response?.status === 404, `${e}`);
    expect(e.response.data.resourceType === 'OperationOutcome', e.response.data);
  }

  // Bulk Data: kick-off, poll, manifest, files.
  const research = new Client({
    baseUrl: base,
    bearerToken: env('RESEARCH_TOKEN'),
    customHeaders: { 'x-purpose-of-use': 'HRESCH', 'x-legal-basis': 'section-251-support' },
  });
  const kickOff = await research.operation({
    name: '$export',
    resourceType: 'Group',
    id: env('PROJECT'),
    method: 'GET',
    input: { _type: 'Observation' },
    options: { headers: { prefer: 'respond-async' } },
  });
  const accepted = Client.httpFor(kickOff).response;
  expect(accepted.status === 202, `kick-off ${accepted.status}`);
  const statusUrl = accepted.headers.get('content-location');
  expect(statusUrl, 'Content-Location');
  let manifest;
  for (let polls = 0; ; polls += 1) {
    expect(polls < 600, 'the export never finished');
    const answer = await research.request(statusUrl);
    const response = Client.httpFor(answer).response;
    if (response.status === 200) {
      manifest = answer;
      break;
    }
    expect(response.status === 202, `status ${response.status}`);
    const retryAfter = Number(response.headers.get('retry-after'));
    expect(retryAfter >= 1, 'Retry-After');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(manifest.requiresAccessToken === true && Array.isArray(manifest.output), manifest);
  let rows = 0;
  for (const output of manifest.output) {
    const file = await fetch(output.url, {
      headers: { authorization: `Bearer ${env('RESEARCH_TOKEN')}`, accept: 'application/fhir+ndjson' },
    });
    expect(file.status === 200, `${output.url}: ${file.status}`);
    const lines = (await file.text()).split('\n').filter((l) => l.length > 0);
    expect(lines.length === output.count, output);
    for (const line of lines) {
      const resource = JSON.parse(line);
      expect(resource.resourceType === output.type, resource);
      expect(!line.includes(patientId), 'pseudonymised');
    }
    rows += lines.length;
  }
  expect(rows === exportCount, `exported ${rows} of ${exportCount}`);
  const cancelled = await fetch(statusUrl, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${env('RESEARCH_TOKEN')}` },
  });
  expect(cancelled.status === 202, `DELETE ${cancelled.status}`);

  console.log(`fhir-kit-client peer: every expectation met (${pages} pages, ${rows} rows exported)`);
}

main().catch((e) => {
  const body = e.response?.data ? `\n${JSON.stringify(e.response.data)}` : '';
  console.error(`fhir-kit-client peer: ${e.stack ?? e}${body}`);
  process.exit(1);
});
