// What the apps put in a message: its text and an optional attachment. The file is stored
// first as a Binary whose securityContext is the thread, so exactly those who may read the
// thread may read the file; the message's payload then points at it.

/**
 * The `payload` of a new message: `text` (when not blank) and `file` (when given), uploaded
 * through `write(method, url, body)` with the app's token.
 */
export async function messagePayload(write, header, text, file) {
  const payload = [];
  if (text.trim()) {
    payload.push({ contentString: text });
  }
  if (file) {
    payload.push(await attachment(write, header, file));
  }
  return payload;
}

async function attachment(write, header, file) {
  const contentType = file.type || 'application/octet-stream';
  const binary = await write('POST', 'Binary', {
    resourceType: 'Binary',
    contentType,
    securityContext: { reference: `Communication/${header.id}` },
    data: await base64Of(file),
  });
  return { contentAttachment: { contentType, url: `Binary/${binary.id}`, title: file.name, size: file.size } };
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
