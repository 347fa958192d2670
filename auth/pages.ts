/**
 * The authorization server's pages: sign-in, consent (with the scopes a user may narrow
 * and, for a representative, the patient to act for) and errors. Server-rendered,
 * self-contained (no external assets), every interpolated value escaped.
 */

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `
  :root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
  body { margin: 0; background: #f3f6f9; color: #1b2a38; }
  main { max-width: 26rem; margin: 3rem auto; padding: 2rem; background: #fff; border-radius: 12px;
         box-shadow: 0 2px 12px rgba(0,0,0,.08); }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  p.sub { margin: 0 0 1.5rem; color: #4a5b6b; }
  label { display: block; margin: 1rem 0 .35rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .7rem; font-size: 1rem;
         border: 1px solid #9aabbb; border-radius: 8px; }
  fieldset { border: 1px solid #d5dee6; border-radius: 8px; margin: 1rem 0; padding: .5rem 1rem; }
  legend { font-weight: 600; padding: 0 .25rem; }
  .check { display: flex; gap: .5rem; align-items: center; margin: .4rem 0; font-weight: 400; }
  .buttons { display: flex; gap: .75rem; margin-top: 1.5rem; }
  button { flex: 1; padding: .75rem; font-size: 1rem; border-radius: 8px; border: 0; cursor: pointer; }
  button.primary { background: #0b5cad; color: #fff; }
  button.secondary { background: #e3e9ef; color: #1b2a38; }
  .error { background: #fdecec; color: #8a1c1c; padding: .75rem; border-radius: 8px; margin-bottom: 1rem; }
  code { font-size: .85rem; }
`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · CareThread</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

export function loginPage(options: { pending: string; clientName: string; error?: string }): string {
  return page(
    'Sign in',
    `<h1>Sign in to CareThread</h1>
<p class="sub">${escapeHtml(options.clientName)} is asking to connect to your health information.</p>
${options.error ? `<div class="error" role="alert">${escapeHtml(options.error)}</div>` : ''}
<form method="post" action="login">
  <input type="hidden" name="pending" value="${escapeHtml(options.pending)}">
  <label for="username">Username</label>
  <input type="text" id="username" name="username" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input type="password" id="password" name="password" autocomplete="current-password" required>
  <div class="buttons"><button class="primary" type="submit">Sign in</button></div>
</form>`
  );
}

export function consentPage(options: {
  pending: string;
  clientName: string;
  scopes: string[];
  patientChoices: { reference: string; label: string }[];
}): string {
  const scopes = options.scopes
    .map(
      (s, i) =>
        `<label class="check" for="scope-${i}"><input type="checkbox" id="scope-${i}" name="scope" value="${escapeHtml(s)}" checked> <code>${escapeHtml(s)}</code> ${escapeHtml(describeScope(s))}</label>`
    )
    .join('\n');
  const patients =
    options.patientChoices.length > 1
      ? `<fieldset><legend>Act for</legend>${options.patientChoices
          .map(
            (p, i) =>
              `<label class="check" for="patient-${i}"><input type="radio" id="patient-${i}" name="patient" value="${escapeHtml(p.reference)}"${i === 0 ? ' checked' : ''}> ${escapeHtml(p.label)}</label>`
          )
          .join('\n')}</fieldset>`
      : '';
  return page(
    'Allow access',
    `<h1>Allow access?</h1>
<p class="sub">${escapeHtml(options.clientName)} asks for the access below. Untick anything you do not want to share.</p>
<form method="post" action="consent">
  <input type="hidden" name="pending" value="${escapeHtml(options.pending)}">
  ${patients}
  <fieldset><legend>Access requested</legend>${scopes}</fieldset>
  <div class="buttons">
    <button class="secondary" type="submit" name="decision" value="deny">Deny</button>
    <button class="primary" type="submit" name="decision" value="approve">Allow</button>
  </div>
</form>`
  );
}

export function errorPage(message: string): string {
  return page('Cannot continue', `<h1>Cannot continue</h1><div class="error" role="alert">${escapeHtml(message)}</div>`);
}

function describeScope(scope: string): string {
  const special: Record<string, string> = {
    openid: '— confirm who you are',
    fhirUser: '— know which person you are',
    profile: '— know which person you are',
    launch: '— open in the context of your record',
    'launch/patient': '— know which patient is selected',
    'launch/encounter': '— know which visit is selected',
    offline_access: '— stay connected when you are away',
    online_access: '— stay connected while you are signed in',
  };
  if (special[scope]) {
    return special[scope];
  }
  const [context, rest] = scope.split('/');
  const [type, action] = (rest ?? '').split('.');
  const what = type === '*' ? 'all record types' : type;
  const verbs = /write|c|u|d/.test(action ?? '') && !/^(read|rs|r|s)$/.test(action ?? '') ? 'read and change' : 'read';
  const whose = context === 'patient' ? 'for the selected patient' : context === 'user' ? 'that you can see' : '';
  return `— ${verbs} ${what} ${whose}`.trim();
}
