import Uppy from '@uppy/core';
import Tus from '@uppy/tus';

// EVIDENCE_URL: the archive (https://evidence.example.com); INGEST_KEY: the station's ingest key.
const uppy = new Uppy({ meta: { kind: 'packing_video', orderId: 'ORD-1001' } });
uppy.use(Tus, {
  endpoint: `${EVIDENCE_URL}/v1/uploads`,
  headers: { Authorization: `Bearer ${INGEST_KEY}` },
});
uppy.on('upload-success', (file, response) => {
  // The answer to the last PATCH names the item and the archive's SHA-256 of the bytes.
  const xhr = response.body.xhr;
  console.log(`${file.name}: archived as ${xhr.getResponseHeader('Evidence-Item-Id')}`);
});
uppy.on('upload-error', (file, error) => console.error(`${file.name}: ${error.message}`));

document.querySelector('input[type=file]').addEventListener('change', (event) => {
  for (const file of event.target.files) {
    uppy.addFile({ name: file.name, type: file.type, data: file });
  }
  uppy.upload();
});
