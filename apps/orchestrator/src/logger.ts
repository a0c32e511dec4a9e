/** The logging seam every component takes; Nest's Logger, pino or console fit it. */
export interface Logger {
  debug?(message: string, ...rest: unknown[]): void;
  log(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}
