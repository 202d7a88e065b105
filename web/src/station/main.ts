/**
 * The packing station: sign in with the station's ingest key, scan an order and the camera
 * records it with its context burned in, scan the next and the clip goes to the archive. Scans
 * arrive as keystrokes (a keyboard-wedge scanner types the code and Enter) wherever focus is.
 */
import { formatBytes, h, replace } from '../dom';
import { Camera, ClipRecorder, pickMimeType, stamp } from './camera';
import { ClipStore, type ClipRecord } from './clip-store';
import { classify, elapsed, next, ScanBuffer, tick, type Effect, type StationState } from './scan';
import { saved, type StationSettings } from './settings';
import { Uploader } from './uploader';

interface Me {
  keyId: string;
  name: string;
  role: 'ingest' | 'support' | 'admin';
}

const root = document.getElementById('station')!;
const NAME = 'evidence-station.name';

/** Who a key is; null when the network (not the archive) failed. */
async function whoIs(key: string): Promise<Me | 'invalid' | null> {
  try {
    const res = await fetch('/v1/me', {
      headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
      cache: 'no-store',
    });
    if (res.status === 401) return 'invalid';
    if (!res.ok) return null;
    return (await res.json()) as Me;
  } catch {
    return null;
  }
}

function renderSignIn(message?: string): void {
  document.title = 'Packing station · sign in';
  const key = h('input', {
    id: 'key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const operator = h('input', { id: 'operator', autocomplete: 'off', spellcheck: 'false' });
  const status = h('p', { id: 'signin-status', role: 'alert' }, message ?? '');
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const value = key.value.trim();
        if (!value) return;
        status.textContent = 'Checking the key…';
        const me = await whoIs(value);
        if (me === 'invalid') {
          status.textContent = 'That key is not valid, or it was revoked.';
        } else if (me === null) {
          status.textContent = 'The archive cannot be reached: check the network and try again.';
        } else if (me.role !== 'ingest') {
          status.textContent = `This is a ${me.role} key, a person's: it is never kept on a station. Sign in with the station's own ingest key.`;
        } else {
          saved.setKey(value);
          localStorage.setItem(NAME, me.name);
          if (operator.value.trim()) saved.setOperator(operator.value.trim());
          key.value = '';
          await startStation(value, me.name);
          return;
        }
        key.focus();
      },
    },
    h('h1', {}, 'Packing station'),
    h(
      'p',
      { class: 'help' },
      "Sign in once with this station's ingest key (eak_…): it stays on this device, and can only upload clips.",
    ),
    h('label', { for: 'key' }, 'Station key'),
    key,
    h('label', { for: 'operator' }, 'Operator (or scan OP:… later)'),
    operator,
    h('button', { type: 'submit' }, 'Start the station'),
    status,
  );
  replace(root, form);
  key.focus();
}

async function startStation(key: string, keyName: string): Promise<void> {
  let settings: StationSettings = saved.settings();
  const stationId = () => settings.stationId || keyName;
  let operatorId = saved.operator();
  let state: StationState = { mode: 'idle' };
  let recorder: { clip: ClipRecorder; id: string } | null = null;
  let work: Promise<void> = Promise.resolve();
  let flash = '';
  let flashUntil = 0;
  let storageWarning = '';
  let storageLine = '';

  const store = await ClipStore.open();
  const camera = new Camera(() => {
    const lines = [`Station ${stationId()}   Operator ${operatorId ?? '-'}`, stamp(new Date())];
    if (state.mode === 'recording') {
      const t = state.clip.trackingNumbers;
      lines.unshift(`Order ${state.clip.orderId}${t.length ? `   Tracking ${t.join(' ')}` : ''}`);
    }
    return lines;
  });

  // Clips the page was recording when it died: complete as far as they were stored.
  for (const clip of await store.list()) {
    if (clip.state !== 'recording') continue;
    if (clip.pieces === 0) {
      await store.remove(clip.id);
      continue;
    }
    // As long as it was recorded until its last stored piece (the file says exactly when sent).
    const seconds = ((clip.lastPieceAt ?? 0) - Date.parse(clip.capturedAt)) / 1000;
    await store.update(clip.id, {
      state: 'closed',
      recovered: true,
      durationSec: seconds > 0 ? seconds : clip.pieces,
    });
  }

  const stateEl = h('div', { id: 'state', class: 'state', 'data-state': 'idle', role: 'status' });
  const detailEl = h('div', { id: 'detail', class: 'detail' });
  const messageEl = h('p', { id: 'message', class: 'message', role: 'alert' });
  const uploadEl = h('p', { id: 'upload', class: 'upload', role: 'status' });
  const queueEl = h('ul', { id: 'queue', class: 'queue' });
  const storageEl = h('p', { id: 'storage', class: 'storage' });
  const operatorEl = h('strong', { id: 'operator-name' });
  const stationEl = h('strong', { id: 'station-name' });
  const settingsEl = h('div', { id: 'settings', class: 'settings', hidden: true });
  const forgetEl = h('span', { class: 'forget' });

  const uploader = new Uploader(
    store,
    () => saved.key(),
    () => void renderQueue(),
  );

  const show = (message: string) => {
    flash = message;
    flashUntil = Date.now() + 6000;
    render();
  };

  function render(): void {
    stationEl.textContent = stationId();
    operatorEl.textContent = operatorId ?? 'none: scan OP:…';
    messageEl.textContent = Date.now() < flashUntil ? flash : '';
    const up = uploader.status;
    let mode: string;
    let text: string;
    if (state.mode === 'recording') {
      mode = 'recording';
      text = `● REC ${state.clip.orderId}  ${elapsed((Date.now() - state.clip.startedAt) / 1000)}`;
      const t = state.clip.trackingNumbers;
      detailEl.textContent = t.length
        ? `Tracking ${t.join(', ')}`
        : 'Scan the next order, or STOP (Esc) to end.';
    } else if (up.state === 'uploading') {
      mode = 'uploading';
      text = `Uploading ${up.orderId}`;
      detailEl.textContent = 'Scan an order to record.';
    } else if (up.state === 'waiting') {
      mode = up.reason === 'offline' ? 'offline' : 'error';
      text = up.reason === 'offline' ? 'Offline: clips queued' : 'Upload waiting';
      detailEl.textContent = 'Scan an order to record: clips are kept here until they are sent.';
    } else {
      mode = 'idle';
      text = 'Ready: scan an order';
      detailEl.textContent = operatorId ? '' : 'Scan your operator code (OP:…) first.';
    }
    stateEl.dataset.state = mode;
    stateEl.textContent = text;
    if (up.state === 'uploading') {
      const pct = up.total ? Math.floor((up.sent / up.total) * 100) : 0;
      uploadEl.textContent = `Uploading ${up.orderId}: ${formatBytes(up.sent)} of ${formatBytes(up.total)} (${pct}%)`;
    } else if (up.state === 'waiting') {
      uploadEl.textContent = `${up.message} Next try at ${new Date(up.retryAt).toLocaleTimeString()}, or as soon as the network is back.`;
    } else {
      uploadEl.textContent = '';
    }
    storageEl.textContent = storageLine;
    storageEl.dataset.warning = storageWarning ? 'true' : 'false';
    if (storageWarning) storageEl.textContent = `${storageWarning} ${storageLine}`;
  }

  async function renderQueue(): Promise<void> {
    const clips = await store.list();
    const waiting = clips.filter((c) => c.state === 'closed');
    const up = uploader.status;
    replace(
      queueEl,
      waiting.map((c: ClipRecord) =>
        h(
          'li',
          {
            'data-order': c.orderId,
            'data-recovered': c.recovered ? 'true' : 'false',
            'data-state': c.refused
              ? 'refused'
              : up.state === 'uploading' && up.clipId === c.id
                ? 'uploading'
                : 'queued',
          },
          h('strong', {}, c.orderId),
          ` ${elapsed(c.durationSec)} · ${formatBytes(c.size)}`,
          c.recovered ? ' · recovered' : '',
          c.refused ? ` · ${c.refused}` : '',
        ),
      ),
    );
    const total = waiting.reduce((n, c) => n + c.size, 0);
    queueEl.dataset.count = String(waiting.length);
    queueEl.setAttribute(
      'aria-label',
      waiting.length
        ? `${waiting.length} clips waiting, ${formatBytes(total)}`
        : 'No clips waiting',
    );
    render();
  }

  async function checkStorage(): Promise<void> {
    if (!navigator.storage?.estimate) return;
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    const free = quota - usage;
    // Room for two clips of the longest length, at the rate they are recorded.
    const need = (2 * settings.maxClipSeconds * bitrate()) / 8;
    storageLine = `Storage: ${formatBytes(usage)} used, ${formatBytes(free)} free.`;
    storageWarning =
      quota && free < need
        ? 'Storage is nearly full: clips cannot be kept here much longer. Bring the network back or free disk space.'
        : '';
    render();
  }

  const bitrate = () => Math.round(camera.canvas.width * camera.canvas.height * 2.7);

  async function startClip(orderId: string): Promise<void> {
    const mimeType = pickMimeType(settings.format, camera.hasAudio);
    const id = crypto.randomUUID();
    const record: ClipRecord = {
      id,
      orderId,
      trackingNumbers: [],
      trackingAt: [],
      stationId: stationId(),
      operatorId,
      capturedAt: new Date().toISOString(),
      mimeType,
      state: 'recording',
      recovered: false,
      durationSec: 0,
      size: 0,
      pieces: 0,
    };
    // Recording starts now; its pieces are stored once the clip's record is (a second later).
    const created = store.put(record);
    // After a piece could not be stored, none after it is: the clip keeps what it has up to the
    // gap (a whole WebM, marked cut short like a recovered clip), never seconds cut out of it.
    let cutShort = false;
    const clip = new ClipRecorder(
      camera.output,
      mimeType,
      async (data) => {
        await created;
        if (cutShort) return;
        // A full disk must be seen now, not when the clip ends: the packer can still act.
        await store.append(id, data).catch(async (err: unknown) => {
          cutShort = true;
          show(`This clip cannot be stored past here: ${(err as Error).message}`);
          void checkStorage();
          await store.update(id, { recovered: true }).catch(() => undefined);
          throw err;
        });
      },
      bitrate(),
    );
    recorder = { clip, id };
    await created;
    const first = await clip.started;
    await store.update(id, { capturedAt: first.toISOString() });
  }

  /**
   * Ends the clip being recorded. The recorder stops at once; storing its last piece and queueing
   * it go on while the next clip (if an order was scanned) already records.
   */
  function stopClip(reason: string): Promise<void> {
    const current = recorder;
    if (!current) return Promise.resolve();
    recorder = null;
    if (reason === 'max-length') show('The clip reached its longest length and was closed.');
    return (async () => {
      let duration = 0;
      try {
        // Records on until the encoder has the frames of the scan (see ClipRecorder.stop); the
        // next clip started at the scan, so the two may overlap and nothing falls between them.
        duration = await current.clip.stop();
      } catch (err) {
        show(`The clip could not be stored completely: ${(err as Error).message}`);
      }
      await store.update(current.id, { state: 'closed', durationSec: duration });
      uploader.kick();
      void renderQueue();
      void checkStorage();
    })();
  }

  async function apply(effect: Effect, tracking: { numbers: string[]; at: number[] }) {
    switch (effect.do) {
      case 'start':
        await startClip(effect.orderId);
        break;
      case 'stop':
        // Not waited for: the next scan (an order right after) starts its clip at once, not once
        // this one has caught up and is stored.
        void stopClip(effect.reason).catch((err: unknown) =>
          show(`Error: ${(err as Error).message}`),
        );
        break;
      case 'operator':
        operatorId = effect.operatorId;
        saved.setOperator(operatorId);
        show(`Operator ${operatorId}`);
        break;
      case 'tracking':
        if (recorder) {
          await store.update(recorder.id, {
            trackingNumbers: tracking.numbers,
            trackingAt: tracking.at,
          });
        }
        show(`Tracking ${effect.trackingNumber} added`);
        break;
      case 'refuse':
        show(effect.message);
        break;
    }
  }

  function run(effects: Effect[]): void {
    const tracking =
      state.mode === 'recording'
        ? { numbers: state.clip.trackingNumbers, at: state.clip.trackingAt }
        : { numbers: [], at: [] };
    for (const effect of effects) {
      work = work.then(() =>
        apply(effect, tracking).catch((err: unknown) => show(`Error: ${(err as Error).message}`)),
      );
    }
    render();
  }

  function onCode(raw: string): void {
    const code = classify(raw, settings);
    if (code.type === 'order' && !cameraReady) {
      show('No camera: the clip cannot be recorded. Check the camera in Settings.');
      return;
    }
    const step = next(state, code, Date.now());
    state = step.state;
    run(step.effects);
  }

  // Scans: keystrokes anywhere on the page.
  const scans = new ScanBuffer();
  document.addEventListener(
    'keydown',
    (e) => {
      // AltGr (Ctrl+Alt on Windows) types characters such as @ and # on many layouts: kept.
      const altGr = e.getModifierState('AltGraph') || (e.ctrlKey && e.altKey);
      if (((e.ctrlKey || e.altKey) && !altGr) || e.metaKey || !root.contains(stateEl)) return;
      const t = e.target as HTMLElement | null;
      const inField =
        !!t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
      if (e.key === 'Escape') {
        scans.reset();
        onCode(settings.stopCode);
        return;
      }
      const got = scans.key(e.key, performance.now(), inField);
      if (!inField && (e.key === 'Enter' || [...e.key].length === 1)) e.preventDefault();
      if (!got) return;
      if (inField && t instanceof HTMLInputElement && got.fromField) {
        e.preventDefault();
        const v = t.value;
        if (v.endsWith(got.code)) t.value = v.slice(0, v.length - got.code.length);
      }
      onCode(got.code);
    },
    true,
  );

  setInterval(() => {
    const step = tick(state, Date.now(), settings.maxClipSeconds);
    if (step.effects.length) {
      state = step.state;
      run(step.effects);
    }
    render();
  }, 250);
  setInterval(() => void checkStorage(), 15_000);

  // The page.
  const stopButton = h(
    'button',
    { id: 'stop', type: 'button', class: 'stop', onclick: () => onCode(settings.stopCode) },
    'Stop',
  );
  const settingsButton = h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      onclick: () => {
        settingsEl.hidden = !settingsEl.hidden;
        if (!settingsEl.hidden) void renderSettings();
      },
    },
    'Settings',
  );
  const renderForget = () =>
    replace(
      forgetEl,
      h(
        'button',
        {
          id: 'forget',
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            const left = (await store.list()).length;
            replace(
              forgetEl,
              left
                ? `${left} clip(s) not yet archived stay on this device and go out after the next sign-in. `
                : '',
              h(
                'button',
                {
                  id: 'forget-yes',
                  type: 'button',
                  class: 'danger',
                  onclick: () => {
                    saved.forget();
                    localStorage.removeItem(NAME);
                    location.reload();
                  },
                },
                'Forget this station',
              ),
              ' ',
              h('button', { type: 'button', class: 'secondary', onclick: renderForget }, 'Cancel'),
            );
          },
        },
        'Forget this station',
      ),
    );
  renderForget();

  async function renderSettings(): Promise<void> {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter(
      (d) => d.kind === 'videoinput',
    );
    const field = (label: string, input: HTMLElement) => h('label', {}, label, input);
    const text = (id: keyof StationSettings, value: string) =>
      h('input', { id: `set-${id}`, value, autocomplete: 'off', spellcheck: 'false' });
    const station = text('stationId', settings.stationId);
    station.setAttribute('placeholder', keyName);
    const cameraSel = h(
      'select',
      { id: 'set-camera' },
      h('option', { value: '' }, 'Default camera'),
      devices.map((d) =>
        h(
          'option',
          { value: d.deviceId, selected: d.deviceId === settings.deviceId },
          d.label || d.deviceId.slice(0, 8),
        ),
      ),
    );
    const resolutions: [number, number][] = [
      [640, 480],
      [1280, 720],
      [1920, 1080],
    ];
    const res = h(
      'select',
      { id: 'set-resolution' },
      resolutions.map(([w, hh]) =>
        h(
          'option',
          { value: `${w}x${hh}`, selected: w === settings.width && hh === settings.height },
          `${w}×${hh}`,
        ),
      ),
    );
    const format = h(
      'select',
      { id: 'set-format' },
      (['auto', 'webm', 'mp4'] as const).map((f) =>
        h(
          'option',
          { value: f, selected: f === settings.format },
          f === 'auto' ? 'Automatic (WebM)' : f.toUpperCase(),
        ),
      ),
    );
    const mic = h('input', { id: 'set-mic', type: 'checkbox', checked: settings.microphone });
    const max = h('input', {
      id: 'set-max',
      type: 'number',
      min: 10,
      max: 7200,
      value: settings.maxClipSeconds,
    });
    const tracking = text('trackingPattern', settings.trackingPattern);
    const orders = text('orderPattern', settings.orderPattern);
    const stop = text('stopCode', settings.stopCode);
    const prefix = text('operatorPrefix', settings.operatorPrefix);
    const status = h('p', { role: 'status' });
    replace(
      settingsEl,
      h(
        'form',
        {
          onsubmit: async (e: Event) => {
            e.preventDefault();
            if (state.mode === 'recording') {
              status.textContent = 'Stop the clip before changing the settings.';
              return;
            }
            const [w, hh] = res.value.split('x').map(Number) as [number, number];
            const nextSettings: StationSettings = {
              ...settings,
              stationId: station.value.trim(),
              deviceId: cameraSel.value,
              width: w,
              height: hh,
              format: format.value as StationSettings['format'],
              microphone: mic.checked,
              maxClipSeconds: Math.max(10, Math.min(7200, Number(max.value) || 600)),
              trackingPattern: tracking.value,
              orderPattern: orders.value,
              stopCode: stop.value.trim() || 'STOP',
              operatorPrefix: prefix.value,
            };
            settings = nextSettings;
            saved.setSettings(settings);
            await openCamera();
            status.textContent = 'Saved.';
            render();
          },
        },
        h('h2', {}, 'Settings'),
        field('Station id', station),
        field('Camera', cameraSel),
        field('Resolution', res),
        field('Format', format),
        field('Record sound (microphone)', mic),
        field('Longest clip (seconds)', max),
        field('Tracking numbers (pattern)', tracking),
        field('Order ids (pattern)', orders),
        field('Stop code', stop),
        field('Operator prefix', prefix),
        h('button', { type: 'submit' }, 'Save'),
        status,
      ),
    );
  }

  let cameraReady = false;
  const cameraEl = h('p', { id: 'camera', class: 'camera' });
  async function openCamera(): Promise<void> {
    cameraReady = false;
    try {
      await camera.open(settings, () => {
        // Unplugged, or taken by another program: the clip ends with what it has.
        cameraReady = false;
        cameraEl.textContent = 'The camera is gone: plug it back in, then choose it in Settings.';
        if (state.mode === 'recording') onCode(settings.stopCode);
        show('The camera stopped: the clip was closed.');
      });
      cameraReady = true;
      cameraEl.textContent = `${camera.label || 'Camera'} · ${camera.canvas.width}×${camera.canvas.height}${camera.hasAudio ? ' · sound' : ''}`;
    } catch (err) {
      cameraEl.textContent = `No camera: ${(err as Error).message}. Allow the camera for this page, or choose another in Settings.`;
    }
  }

  document.title = `Packing station ${stationId()}`;
  replace(
    root,
    h(
      'header',
      { class: 'bar' },
      h('span', {}, 'Station ', stationEl),
      h('span', {}, 'Operator ', operatorEl),
      h('span', { class: 'spacer' }),
      settingsButton,
      forgetEl,
    ),
    stateEl,
    detailEl,
    messageEl,
    h(
      'div',
      { class: 'stage' },
      camera.canvas,
      h(
        'div',
        { class: 'side' },
        stopButton,
        cameraEl,
        uploadEl,
        h('h2', {}, 'Waiting to be sent'),
        queueEl,
        storageEl,
      ),
    ),
    settingsEl,
  );
  render();
  await openCamera();
  void navigator.storage?.persist?.();
  await renderQueue();
  void checkStorage();
  uploader.kick();
}

async function boot(): Promise<void> {
  const key = saved.key();
  if (!key) return renderSignIn();
  const me = await whoIs(key);
  if (me === 'invalid') {
    return renderSignIn('The station key was refused (revoked?): sign in with a valid ingest key.');
  }
  if (me && me.role !== 'ingest') {
    saved.forget();
    return renderSignIn('Only an ingest key may be kept on a station.');
  }
  // Offline at start: the station still records with the key it has; the clips wait.
  const name = me?.name ?? localStorage.getItem(NAME) ?? 'station';
  if (me) localStorage.setItem(NAME, me.name);
  await startStation(key, name);
}

// The camera, the hash and the lock below exist only in a secure context (https, or localhost).
if (!window.isSecureContext || !navigator.locks || !crypto.subtle) {
  replace(
    root,
    h(
      'p',
      { id: 'insecure', class: 'message' },
      'The station needs a secure address for the camera: open it over https (or on this PC as 127.0.0.1), or start Chromium as docs/station.md shows.',
    ),
  );
} else {
  // One station per browser: a second tab would record the same camera and take the first's
  // unfinished clips for crashed ones.
  navigator.locks
    .request('evidence-station', { signal: AbortSignal.timeout(5000) }, async () => {
      await boot();
      await new Promise(() => undefined); // held while the page lives
    })
    .catch((err: unknown) => {
      const busy = err instanceof DOMException && ['TimeoutError', 'AbortError'].includes(err.name);
      replace(
        root,
        h(
          'p',
          { class: 'message', role: 'alert' },
          busy
            ? 'This station is already open in another tab or window: use that one.'
            : `The station could not start: ${(err as Error).message}`,
        ),
      );
    });
}
