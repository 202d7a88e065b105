/**
 * The station's key and settings, kept in this browser (localStorage) across reloads: the key is
 * an ingest key, a device's, which can upload and read back nothing but its own uploads.
 * "Forget this station" removes both.
 */
import type { CameraSettings } from './camera';
import { DEFAULT_SCAN_SETTINGS, type ScanSettings } from './scan';

export interface StationSettings extends ScanSettings, CameraSettings {
  /** Empty: the key's name. */
  stationId: string;
  format: 'auto' | 'webm' | 'mp4';
  maxClipSeconds: number;
}

const KEY = 'evidence-station.key';
const SETTINGS = 'evidence-station.settings';
const OPERATOR = 'evidence-station.operator';

export const DEFAULTS: StationSettings = {
  ...DEFAULT_SCAN_SETTINGS,
  stationId: '',
  deviceId: '',
  width: 1280,
  height: 720,
  microphone: true,
  format: 'auto',
  maxClipSeconds: 600,
};

export const saved = {
  key: (): string | null => localStorage.getItem(KEY),
  setKey: (key: string) => localStorage.setItem(KEY, key),
  operator: (): string | null => localStorage.getItem(OPERATOR),
  setOperator: (id: string | null) =>
    id ? localStorage.setItem(OPERATOR, id) : localStorage.removeItem(OPERATOR),
  settings(): StationSettings {
    try {
      const raw = JSON.parse(localStorage.getItem(SETTINGS) ?? '{}') as Partial<StationSettings>;
      return { ...DEFAULTS, ...raw };
    } catch {
      return { ...DEFAULTS };
    }
  },
  setSettings: (s: StationSettings) => localStorage.setItem(SETTINGS, JSON.stringify(s)),
  forget() {
    localStorage.removeItem(KEY);
    localStorage.removeItem(SETTINGS);
    localStorage.removeItem(OPERATOR);
  },
};
