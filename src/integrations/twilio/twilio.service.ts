import type { IncomingMessage } from 'node:http';
import type { Insertable } from 'kysely';
import { Counter } from 'prom-client';
import type { ApiKeyRepository } from '../../access/api-key.repository';
import type { AppConfig } from '../../base/config';
import { twilioCallbackBody, type CallbackResult } from '../../contract/integrations.contract';
import type { AuditLog } from '../../base/audit.service';
import type { Db, ProviderRecordingsTable } from '../../db/database';
import { AppError } from '../../base/errors';
import type { IngestService } from '../../ingest/ingest.service';
import { stageRawBody } from '../../ingest/raw-upload';
import type { JobQueue, QueuedJob } from '../../jobs/job-queue';
import type { Logger } from '../../base/logger';
import type { Metrics } from '../../base/metrics';
import type { BlobStore } from '../../storage/blob-store';
import { FetchError, type MediaFetcher } from '../media-fetcher';
import type { ProviderRecordingRepository } from '../provider-recording.repository';
import {
  HMAC_SHA1,
  signatureAlgorithm,
  validTwilioSignature,
  type TwilioParams,
} from './twilio-signature';
import { systemActor } from '../../base/actor';

export const TWILIO_QUEUE = 'twilio-recording-fetch';
const PROVIDER = 'twilio';

/** What the request says about its own signature: the headers Twilio sets. */
export interface CallbackSignature {
  /** X-Twilio-Signature */
  signature: string | undefined;
  /** X-Twilio-Webhooks-Signature-Settings: present when a SharedKey signed the request. */
  settings: string | undefined;
}

type FetchOutcome = 'archived' | 'retry' | 'failed';

/** A URL fit for the append-only trail: no user info, query or fragment (credentials live there). */
export function withoutSecrets(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return '(not a URL)';
  }
}

export interface TwilioServiceDeps {
  db: Db;
  repo: ProviderRecordingRepository;
  keys: ApiKeyRepository;
  fetcher: MediaFetcher;
  ingest: IngestService;
  store: BlobStore;
  audit: AuditLog;
  logger: Logger;
  cfg: Pick<AppConfig, 'twilio' | 'mediaFetch' | 'maxUploadBytes' | 'media' | 'publicUrl'>;
  queue?: JobQueue;
}

/**
 * The Twilio recording callback adapter: verifies Twilio's signature, records each completed
 * recording once, and fetches its media in a background job (retried while Twilio still answers
 * 404), from allow-listed hosts only, into the same ingest path as every upload. Recordings are
 * archived under the configured ingest key, with the RecordingSid as call id, so a callback
 * delivered again or a job run twice never makes a second item.
 */
export class TwilioService {
  private readonly db: Db;
  private readonly repo: ProviderRecordingRepository;
  private readonly keys: ApiKeyRepository;
  private readonly fetcher: MediaFetcher;
  private readonly ingest: IngestService;
  private readonly store: BlobStore;
  private readonly audit: AuditLog;
  private readonly logger: Logger;
  private readonly cfg: TwilioServiceDeps['cfg'];
  private readonly queue?: JobQueue;

  constructor(deps: TwilioServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.keys = deps.keys;
    this.fetcher = deps.fetcher;
    this.ingest = deps.ingest;
    this.store = deps.store;
    this.audit = deps.audit;
    this.logger = deps.logger;
    this.cfg = deps.cfg;
    this.queue = deps.queue;
  }

  private fetches?: Counter<'provider' | 'outcome'>;
  /** Whether the missing SharedKey secret was logged: once, not per (unauthenticated) request. */
  private warnedNoSharedKeySecret = false;

  /** Counts this instance's fetch attempts by outcome (archived, retry, failed). */
  registerMetrics(metrics: Metrics): void {
    this.fetches = new Counter({
      name: 'provider_recording_fetches_total',
      help: 'Recording fetches run by this instance, by outcome (archived; retry: failed, tried again later; failed: given up)',
      labelNames: ['provider', 'outcome'] as const,
      registers: [metrics.registry],
    });
    for (const outcome of ['archived', 'retry', 'failed'] satisfies FetchOutcome[]) {
      this.fetches.inc({ provider: PROVIDER, outcome }, 0);
    }
  }

  private counted(outcome: FetchOutcome): void {
    this.fetches?.inc({ provider: PROVIDER, outcome });
  }

  /**
   * Checks the request as Twilio's helper library's `webhook()` does: without the settings header
   * (or with an empty one: the library tests it for truth), the auth token and HMAC-SHA1; with it,
   * the SharedKey's secret and the algorithm it names.
   */
  private verify(params: TwilioParams, sig: CallbackSignature, url: string): void {
    const twilio = this.twilio;
    const shared = Boolean(sig.settings);
    const secret = shared ? twilio.sharedKeySecret : twilio.authToken;
    if (!secret) {
      // Anyone can send the header: said once per process, not once per request (log flooding).
      if (!this.warnedNoSharedKeySecret) {
        this.warnedNoSharedKeySecret = true;
        this.logger.warn(
          'a Twilio callback was signed with a SharedKey, and TWILIO_WEBHOOK_SHARED_KEY_SECRET is not set (said once; every such callback is refused 403)',
        );
      }
      throw new AppError(
        'invalid_signature',
        'This callback was signed with a Twilio SharedKey (X-Twilio-Webhooks-Signature-Settings), whose secret this service was not given (TWILIO_WEBHOOK_SHARED_KEY_SECRET).',
      );
    }
    const algorithm = shared ? signatureAlgorithm(sig.settings) : HMAC_SHA1;
    if (!validTwilioSignature(secret, sig.signature, url, params, algorithm)) {
      throw new AppError(
        'invalid_signature',
        shared
          ? `The X-Twilio-Signature does not match this request for the SharedKey secret and algorithm ${algorithm.slice(0, 32)}; it was not sent by Twilio with our key (check TWILIO_WEBHOOK_SHARED_KEY_SECRET, and PUBLIC_URL behind a proxy).`
          : 'The X-Twilio-Signature does not match this request; it was not sent by Twilio with our auth token (check PUBLIC_URL behind a proxy).',
      );
    }
  }

  private get twilio() {
    if (!this.cfg.twilio) {
      throw new AppError(
        'not_found',
        'The Twilio integration is not configured on this service (TWILIO_AUTH_TOKEN).',
      );
    }
    return this.cfg.twilio;
  }

  async callback(
    params: TwilioParams,
    signature: CallbackSignature,
    url: string,
  ): Promise<CallbackResult> {
    const twilio = this.twilio;
    this.verify(params, signature, url);
    const parsed = twilioCallbackBody.safeParse(params);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AppError('validation_failed', `Field "${issue.path.join('.')}" ${issue.message}.`);
    }
    const p = parsed.data;
    if (twilio.accountSid && p.AccountSid !== twilio.accountSid) {
      throw new AppError(
        'wrong_account',
        'This callback is for another Twilio account than TWILIO_ACCOUNT_SID.',
      );
    }
    const startedAt = p.RecordingStartTime ? new Date(p.RecordingStartTime) : undefined;
    const recorded = {
      provider: PROVIDER,
      recording_sid: p.RecordingSid,
      call_sid: p.CallSid,
      account_sid: p.AccountSid,
      duration_seconds: p.RecordingDuration ?? null,
      channels: p.RecordingChannels ?? null,
      recording_source: p.RecordingSource ?? null,
      started_at: startedAt && !Number.isNaN(startedAt.getTime()) ? startedAt : null,
    };
    if (p.RecordingStatus === 'absent') {
      // Twilio made no recording (no audio): nothing to fetch, but the gap is on record, once.
      await this.announce(
        { ...recorded, media_url: null, status: 'absent' },
        { recordingStatus: 'absent', ...(p.ErrorCode ? { errorCode: p.ErrorCode } : {}) },
      );
      // A redelivery gets the same answer.
      return { recordingSid: p.RecordingSid, status: 'absent' };
    }
    if (p.RecordingStatus !== 'completed') {
      return { recordingSid: p.RecordingSid, status: 'ignored' };
    }
    if (!p.RecordingUrl) {
      throw new AppError(
        'validation_failed',
        'Field "RecordingUrl" is required for a completed recording.',
        { field: 'RecordingUrl' },
      );
    }
    if (!this.queue?.isStarted) {
      throw new AppError('not_ready', 'The job queue is not running on this instance.');
    }
    // The trail is append-only: the media URL goes in without its query (a provider may sign it
    // with a token there) or user info; the fetch uses the stored URL as given.
    const trailUrl = withoutSecrets(p.RecordingUrl);
    let fresh = await this.announce(
      { ...recorded, media_url: p.RecordingUrl, status: 'queued' },
      { mediaUrl: trailUrl },
    );
    // Twilio said `absent` first, and now has the recording after all: fetch it, on record.
    if (!fresh) fresh = await this.requeueAbsent(recorded, p.RecordingUrl, trailUrl);
    // Sent again for a redelivered callback too: the queue keeps one job per recording.
    await this.queue.send(
      TWILIO_QUEUE,
      { recordingSid: p.RecordingSid },
      {
        singletonKey: p.RecordingSid,
      },
    );
    return { recordingSid: p.RecordingSid, status: fresh ? 'queued' : 'duplicate' };
  }

  /**
   * Records a recording the first time it is announced, with its audit event: both commit
   * together, so a redelivery never finds one without the other. False for a redelivery.
   */
  private announce(
    row: Insertable<ProviderRecordingsTable>,
    details: Record<string, unknown>,
  ): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const inserted = await this.repo.insert(tx, row);
      if (inserted) {
        await this.audit.append(tx, [
          {
            action: 'integration.callback',
            actor: systemActor('twilio'),
            details: {
              provider: PROVIDER,
              recordingSid: row.recording_sid,
              callSid: row.call_sid,
              ...details,
            },
          },
        ]);
      }
      return inserted;
    });
  }

  /**
   * Turns an `absent` recording into a queued one when a `completed` callback for it arrives, in
   * one transaction with its audit event. False when the recording was not absent (a redelivery).
   */
  private requeueAbsent(
    recorded: Omit<Insertable<ProviderRecordingsTable>, 'media_url' | 'status'>,
    mediaUrl: string,
    trailUrl: string,
  ): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const requeued = await this.repo.requeueAbsent(tx, PROVIDER, recorded.recording_sid, {
        mediaUrl,
        // The completed callback's duration and channels, not the absent one's.
        details: {
          duration_seconds: recorded.duration_seconds,
          channels: recorded.channels,
          recording_source: recorded.recording_source,
          started_at: recorded.started_at,
        },
        at: new Date(),
      });
      if (requeued) {
        await this.audit.append(tx, [
          {
            action: 'integration.callback',
            actor: systemActor('twilio'),
            details: {
              provider: PROVIDER,
              recordingSid: recorded.recording_sid,
              callSid: recorded.call_sid,
              mediaUrl: trailUrl,
              previousStatus: 'absent',
            },
          },
        ]);
      }
      return requeued;
    });
  }

  async start(opts: { workers: boolean }): Promise<void> {
    if (this.cfg.twilio && !this.cfg.publicUrl) {
      this.logger.warn(
        'TWILIO_AUTH_TOKEN is set without PUBLIC_URL: Twilio callbacks are checked against the URL built from the Host header the client sent, so a callback Twilio signed for another deployment under the same auth token would be accepted here; set PUBLIC_URL to the address Twilio calls',
      );
    }
    if (!this.queue || !this.cfg.twilio) return;
    await this.queue.start([
      {
        name: TWILIO_QUEUE,
        policy: 'stately',
        expireInSeconds: 3600,
        // Twilio can take minutes to make a recording available: 8 tries over about two hours.
        retryLimit: 8,
        retryDelaySeconds: this.cfg.media.retryDelaySeconds,
      },
    ]);
    if (opts.workers) {
      await this.queue.work<{ recordingSid: string }>(TWILIO_QUEUE, (job) => this.fetchJob(job));
    }
  }

  private async fetchJob(job: QueuedJob<{ recordingSid: string }>): Promise<void> {
    const recordingSid = String(job.data.recordingSid ?? '');
    const last = job.retryCount >= job.retryLimit;
    // A job sent for a recording Twilio later (or first) called absent: there is nothing to fetch.
    if ((await this.repo.find(this.db, PROVIDER, recordingSid))?.status === 'absent') return;
    try {
      await this.fetchRecording(recordingSid);
      this.counted('archived');
    } catch (err) {
      // Twilio answering 404 (not ready yet), our key or queue missing: try again later. A
      // refused host, a video, an oversized file: recorded as failed at once.
      const retryable =
        err instanceof FetchError
          ? err.retryable
          : err instanceof AppError
            ? // our key or queue missing, or the transfer cut off mid-way
              err.code === 'not_ready' || err.code === 'upload_aborted'
            : true;
      const reason =
        err instanceof FetchError || err instanceof AppError
          ? err.message
          : 'an internal error (see the service log)';
      const final = !retryable || last;
      this.counted(final ? 'failed' : 'retry');
      if (!(err instanceof FetchError || err instanceof AppError)) {
        this.logger.warn({ err, recordingSid }, 'Twilio recording fetch failed');
      }
      await this.repo.update(this.db, PROVIDER, recordingSid, {
        status: final ? 'failed' : 'queued',
        lastError: final ? reason : `attempt ${job.retryCount + 1} failed (${reason}); retrying`,
        attempted: true,
        at: new Date(),
      });
      if (final) {
        await this.audit.record({
          action: 'integration.callback',
          outcome: 'failed',
          actor: systemActor('twilio'),
          details: { provider: PROVIDER, recordingSid, error: reason },
        });
        return;
      }
      throw err;
    }
  }

  /** Fetches one announced recording and archives it (a no-op once archived). */
  async fetchRecording(recordingSid: string): Promise<string> {
    const twilio = this.twilio;
    const row = await this.repo.find(this.db, PROVIDER, recordingSid);
    if (!row) throw new AppError('not_found', `No Twilio recording ${recordingSid} was announced.`);
    if (row.status === 'archived' && row.item_id) return row.item_id;
    if (!row.media_url) {
      throw new AppError('not_found', `Twilio recorded no audio for ${recordingSid} (absent).`);
    }
    const key = await this.keys.findActive(this.db, twilio.ingestKeyId);
    if (!key || key.role !== 'ingest') {
      throw new AppError(
        'not_ready',
        'TWILIO_INGEST_KEY_ID names no active ingest key; mint one with npm run keys -- create --role ingest --name twilio.',
      );
    }
    const url = new URL(row.media_url);
    if (!/\.[a-z0-9]{2,4}$/i.test(url.pathname)) url.pathname += `.${twilio.mediaFormat}`;
    const media = await this.fetcher.fetch(url.toString(), {
      allowHosts: twilio.mediaHosts,
      allowPrivate: this.cfg.mediaFetch.allowPrivate,
      timeoutMs: this.cfg.mediaFetch.timeoutMs,
      maxBytes: this.cfg.maxUploadBytes,
      // Twilio's media takes the account SID and auth token; the callback names the account.
      basicAuth: twilio.basicAuth ?? {
        username: row.account_sid ?? '',
        password: twilio.authToken,
      },
    });
    let staged;
    try {
      staged = await stageRawBody(
        media.body as IncomingMessage,
        this.store,
        this.cfg.maxUploadBytes,
        'call_recording',
      );
    } finally {
      media.body.destroy(); // read to its end, or refused: either way the socket goes
    }
    const result = await this.ingest.ingest({
      principal: { keyId: key.id, role: 'ingest', name: key.name },
      staged,
      fields: {
        kind: 'call_recording',
        callId: row.recording_sid,
        source: PROVIDER,
        ...(row.started_at ? { capturedAt: new Date(row.started_at).toISOString() } : {}),
      },
      originalFilename: `${row.recording_sid}.${twilio.mediaFormat}`,
    });
    await this.repo.update(this.db, PROVIDER, recordingSid, {
      status: 'archived',
      itemId: result.item.id,
      lastError: null,
      attempted: true,
      at: new Date(),
    });
    this.logger.info({ recordingSid, itemId: result.item.id }, 'Twilio recording archived');
    return result.item.id;
  }
}
