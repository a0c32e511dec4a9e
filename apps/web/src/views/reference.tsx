import { useEffect, useState } from 'preact/hooks';
import { api, problemText } from '../api';
import { Notice, PageTitle } from '../components/common';

type Json = Record<string, unknown>;
const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** The API reference, drawn from /openapi.json (the same document the api serves and docs/openapi.json holds). */
export function ReferenceView() {
  const [doc, setDoc] = useState<Json | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => void api.openapi().then(setDoc, setError), []);
  if (error) return <Notice kind="error">{problemText(error)}</Notice>;
  if (!doc) return <Notice>Loading…</Notice>;
  const info = doc.info as Json;
  const paths = doc.paths as Record<string, Json>;
  const schemas = ((doc.components as Json).schemas ?? {}) as Record<string, Json>;
  const ops = Object.entries(paths).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ path, method: m, op: item[m] as Json, shared: (item.parameters ?? []) as Json[] })),
  );
  return (
    <section class="reference">
      <PageTitle title="API reference">
        {String(info.title)} <small>{String(info.version)}</small>
      </PageTitle>
      <p>{String(info.description ?? '')}</p>
      <p>
        The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI {String(doc.openapi)}).
      </p>
      <nav aria-label="Operations" class="toc">
        <ul>
          {ops.map(({ path, method, op }) => (
            <li key={`${method} ${path}`}>
              <a href={`#op-${String(op.operationId)}`}>
                <code>{method.toUpperCase()}</code> {path}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {ops.map(({ path, method, op, shared }) => (
        <article key={`${method} ${path}`} id={`op-${String(op.operationId)}`} class="operation">
          <h2>
            <code class={`method method-${method}`}>{method.toUpperCase()}</code> <code>{path}</code>
          </h2>
          <p>
            <strong>{String(op.summary ?? '')}</strong>
            {Array.isArray(op.security) && op.security.length === 0 ? ' (no authentication)' : ''}
          </p>
          {op.description !== undefined && <p>{String(op.description)}</p>}
          <Parameters params={[...shared, ...((op.parameters ?? []) as Json[])]} />
          {op.requestBody !== undefined && (
            <>
              <h3>Request body</h3>
              <ul>
                {Object.entries(((op.requestBody as Json).content ?? {}) as Record<string, Json>).map(([type, c]) => (
                  <li key={type}>
                    <code>{type}</code>: <SchemaRef schema={c.schema as Json} />
                  </li>
                ))}
              </ul>
            </>
          )}
          <h3>Responses</h3>
          <dl class="responses">
            {Object.entries(op.responses as Record<string, Json>).map(([code, r]) => (
              <div key={code}>
                <dt>
                  <code>{code}</code>
                </dt>
                <dd>
                  {String(r.description ?? '')}{' '}
                  {Object.entries((r.content ?? {}) as Record<string, Json>).map(([type, c]) => (
                    <span key={type}>
                      <code>{type}</code> <SchemaRef schema={c.schema as Json} />{' '}
                    </span>
                  ))}
                </dd>
              </div>
            ))}
          </dl>
        </article>
      ))}
      <h2>Schemas</h2>
      {Object.entries(schemas).map(([name, s]) => (
        <article key={name} id={`schema-${name}`} class="schema">
          <h3>{name}</h3>
          {s.description !== undefined && <p>{String(s.description)}</p>}
          <Properties schema={s} />
        </article>
      ))}
    </section>
  );
}

function Parameters({ params }: { params: Json[] }) {
  if (!params.length) return null;
  return (
    <table class="data">
      <caption>Parameters</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">In</th>
          <th scope="col">Type</th>
          <th scope="col">Description</th>
        </tr>
      </thead>
      <tbody>
        {params.map((p) => (
          <tr key={`${String(p.in)}:${String(p.name)}`}>
            <td>
              <code>{String(p.name)}</code>
              {p.required ? ' (required)' : ''}
            </td>
            <td>{String(p.in)}</td>
            <td>{typeText(p.schema as Json)}</td>
            <td>{String(p.description ?? '')}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function SchemaRef({ schema }: { schema: Json | undefined }) {
  if (!schema) return null;
  const r = schema.$ref as string | undefined;
  if (r) {
    const name = r.split('/').pop()!;
    return <a href={`#schema-${name}`}>{name}</a>;
  }
  return <code>{typeText(schema)}</code>;
}

function Properties({ schema }: { schema: Json }) {
  const props = schema.properties as Record<string, Json> | undefined;
  if (!props) return <p>{typeText(schema)}</p>;
  const required = new Set((schema.required ?? []) as string[]);
  return (
    <table class="data">
      <thead>
        <tr>
          <th scope="col">Field</th>
          <th scope="col">Type</th>
          <th scope="col">Description</th>
        </tr>
      </thead>
      <tbody>
        {Object.entries(props).map(([k, v]) => (
          <tr key={k}>
            <td>
              <code>{k}</code>
              {required.has(k) ? ' (required)' : ''}
            </td>
            <td>{v.$ref ? <SchemaRef schema={v} /> : typeText(v)}</td>
            <td>{String(v.description ?? '')}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A short, readable type: "string (date-time)", "integer 1–100", "array of low | normal | high"... */
export function typeText(s: Json | undefined): string {
  if (!s) return '';
  if (s.$ref) return String(s.$ref).split('/').pop()!;
  if (Array.isArray(s.enum)) return s.enum.map(String).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = (s.anyOf ?? s.oneOf) as Json[] | undefined;
  if (alts && !s.type) return alts.map((a) => typeText(a)).join(' or ');
  const type = Array.isArray(s.type) ? s.type.join(' or ') : String(s.type ?? 'any');
  if (type === 'array') return `array of ${typeText(s.items as Json)}`;
  const range = s.minimum !== undefined || s.maximum !== undefined ? ` ${String(s.minimum ?? '')}–${String(s.maximum ?? '')}` : '';
  const fmt = s.format ? ` (${String(s.format)})` : s.pattern ? ` matching ${String(s.pattern)}` : '';
  return `${type}${range}${fmt}`;
}
