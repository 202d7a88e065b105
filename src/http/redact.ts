/**
 * The request path as logs and the audit trail may keep it. A share link's path is its token, and
 * the token is the link: anyone reading a log could use it. Only its SHA-256 is stored anywhere.
 */
export function loggablePath(path: string): string {
  // Routing is case-insensitive: /S/<token> opens the link too.
  return /^\/s\//i.test(path) ? '/s/[token]' : path;
}
