import { withContext } from './cli-context';

void withContext(
  async () => {
    console.log('Database schema is up to date.');
  },
  { migrate: true },
);
