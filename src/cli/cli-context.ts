import { ConfigError, loadConfig } from '../base/config';
import { AppContext } from '../context';
import { createLogger } from '../base/logger';

/** Runs a CLI body against the same configuration and context as the service. */
export async function withContext(
  fn: (ctx: AppContext) => Promise<void>,
  options: { migrate?: boolean; jobQueueSchema?: boolean } = {},
): Promise<void> {
  try {
    const config = loadConfig();
    const ctx = await AppContext.fromConfig(
      config,
      {
        migrate: options.migrate ?? true,
        jobQueueSchema: options.jobQueueSchema,
        createSigningKey: false,
        mediaTools: false,
      },
      { logger: createLogger(process.env.LOG_LEVEL ?? 'warn', 2) },
    );
    try {
      await fn(ctx);
    } finally {
      await ctx.close();
    }
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : `Error: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
