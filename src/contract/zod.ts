import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

// Adds `.openapi(...)` to every zod schema; contract files import `z` from here so it is always done
// before a schema is declared.
extendZodWithOpenApi(z);

export { z };
