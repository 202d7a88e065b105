import { withContext } from './cli-context';

void withContext(
  async () => {
    console.log('Database schema is up to date.');
  },
  // The job queue's schema and queues too: the owner's work, so the app's login needs none of it.
  { migrate: true, jobQueueSchema: true },
);
