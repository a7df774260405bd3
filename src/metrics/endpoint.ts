// Where the metrics endpoint listens and how /metrics is protected: made from
// the configuration in a worker, sent to the primary, which serves it. A type
// with no imports, so both sides can name it.

export interface MetricsEndpoint {
  host: string;
  port: number;
  /** `Authorization: Bearer <token>` required on /metrics; null: open. */
  authToken: string | null;
}
