// The official Node SDK (@chatbotkit/sdk, pinned in package.json) against a running stand-in:
// every secret method it has: list, fetch, create, update, delete, revoke, verify, authenticate.
//
//     node tests/sdk/node/scenario.mjs BASE_URL TOKEN
//
// Run by tests/sdk/run.py (which starts `cbk-vault serve --ephemeral`) and by
// tests/test_sdk_scenarios.py, after `npm ci` in this folder. ../scenario.py runs the same
// scenario through the Python SDK (whose methods are list, fetch, create, update, delete, mint, proxy).
//
// Every check states the cloud's behaviour (docs/FIDELITY.md). A check whose fix has not landed
// in the stand-in names its FIDELITY row; if that row is in ../pending.json a failure prints
// `pending` and does not fail the run, and an item all of whose checks pass prints `FIXED` and
// fails it, until the mark is removed. One line per check, then a summary; exit status 1 on failure.

import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'

import { ChatBotKit } from '@chatbotkit/sdk'

const PENDING = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(new URL('../pending.json', import.meta.url), 'utf8'))).filter(
    ([key]) => !key.startsWith('_')
  )
)
const SDK_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/@chatbotkit/sdk/package.json', import.meta.url), 'utf8')
).version

const report = { ok: 0, failed: 0, byItem: {} }

function check(what, passed, detail = '', item = null) {
  if (item) (report.byItem[item] ||= []).push(Boolean(passed))
  if (passed) {
    report.ok += 1
    console.log(`ok       ${what}${item ? `  [${item}]` : ''}`)
  } else if (item && item in PENDING) {
    console.log(`pending  [${item}] ${what}: ${show(detail)}`)
  } else {
    report.failed += 1
    console.log(`FAIL     ${what}${item ? `  [${item}]` : ''}: ${show(detail)}`)
  }
  return passed
}

function show(value) {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

async function section(title, body) {
  console.log(`-- ${title}`)
  try {
    await body()
  } catch (error) {
    report.failed += 1
    console.log(`FAIL     section '${title}' stopped: ${error && error.stack ? error.stack : error}`)
  }
}

// The error a call raised, or null. The Node SDK throws FetchError with .message and .code.
async function raised(call) {
  try {
    await call()
  } catch (error) {
    return error
  }
  return null
}

function apiError(error) {
  if (error === null) return ['no error']
  return [error.code, error.message]
}

async function collect(iterable) {
  const out = []
  for await (const line of iterable) out.push(line)
  return out
}

async function scenario(baseUrl, token) {
  const run = randomBytes(4).toString('hex')
  const alias = `weather-${run}`
  const cbk = new ChatBotKit({ baseUrl, secret: token })
  const s = cbk.secret
  let created

  await section('create and fetch', async () => {
    created = await s.create({
      name: `Weather ${run}`,
      alias,
      type: 'bearer',
      value: 'tok-1',
      description: 'd',
      meta: { env: 'prod', n: 3 },
    })
    check('create answers { id } only', typeof created.id === 'string' && Object.keys(created).join() === 'id', created)
    const item = await s.fetch(`@${alias}`)
    check('fetch by @alias finds it', item.id === created.id, item.id)
    check(
      'fetch gives the fields as created',
      item.name === `Weather ${run}` && item.alias === alias && item.description === 'd' &&
        JSON.stringify(item.meta) === JSON.stringify({ env: 'prod', n: 3 }),
      item
    )
    check(
      'defaults: shared, private, null blueprintId and config, as JSON null',
      item.kind === 'shared' && item.visibility === 'private' && item.blueprintId === null && item.config === null,
      item
    )
    check('type is bearer', item.type === 'bearer', item.type)
    check(
      'exactly the cloud item fields, never value',
      Object.keys(item).sort().join() ===
        'alias,blueprintId,config,createdAt,description,id,kind,meta,name,type,updatedAt,visibility',
      Object.keys(item)
    )
    check(
      'createdAt/updatedAt are epoch milliseconds',
      item.createdAt > 1_600_000_000_000 && item.createdAt === item.updatedAt,
      [item.createdAt, item.updatedAt]
    )
    check('fetch by id', (await s.fetch(created.id)).id === created.id)
    check('fetch by (name)', (await s.fetch(`(Weather ${run})`)).id === created.id)
  })

  await section('update and alias', async () => {
    const updated = await s.update(`@${alias}`, { description: 'd2' })
    check('update by @alias answers the real id', updated.id === created.id, updated)
    const after = await s.fetch(created.id)
    check(
      'fields left out of an update are kept',
      after.description === 'd2' && after.name === `Weather ${run}` && after.meta.env === 'prod',
      after
    )
    check('an update that leaves alias out clears it', after.alias === null, after.alias, 'E1')
    const gone = apiError(await raised(() => s.fetch(`@${alias}`)))
    check('so @alias is NOT_FOUND after that update', gone[0] === 'NOT_FOUND', gone, 'E1')
    await s.update(created.id, { alias, name: `Weather 2 ${run}` })
    const again = await s.fetch(`@${alias}`)
    check('an update that resends alias keeps it', again.id === created.id && again.name === `Weather 2 ${run}`, again)
    await s.update(created.id, { alias: '' })
    check('alias "" clears it', (await s.fetch(created.id)).alias === null)
    await s.update(created.id, { alias })
  })

  await section('masked clientSecret', async () => {
    const config = {
      clientId: 'cid',
      clientSecret: 'cs-secret',
      authorizationUrl: 'https://auth.example/authorize',
      tokenUrl: 'https://auth.example/token',
      scope: 'read',
    }
    const oauth = await s.create({ name: `OAuth ${run}`, type: 'oauth', config })
    const fetched = await s.fetch(oauth.id)
    check(
      'fetch masks config.clientSecret, and only it',
      JSON.stringify(fetched.config) === JSON.stringify({ ...config, clientSecret: '********' }),
      fetched.config
    )
    const page = await s.list({ take: 100 })
    const listed = page.items.find((i) => i.id === oauth.id)
    check('list masks it too', listed && listed.config.clientSecret === '********', listed)
    await s.update(oauth.id, { config: { clientId: 'cid2', clientSecret: '********' } })
    const kept = (await s.fetch(oauth.id)).config
    check(
      'the mask sent back keeps the stored clientSecret; config is replaced whole',
      JSON.stringify(kept) === JSON.stringify({ clientId: 'cid2', clientSecret: '********' }),
      kept
    )
    const empty = await s.create({ config: { clientSecret: '' } })
    check('an empty clientSecret comes back null', (await s.fetch(empty.id)).config.clientSecret === null)
  })

  await section('cursor paging with take', async () => {
    const ids = []
    for (let n = 0; n < 5; n += 1) ids.push((await s.create({ name: `page ${run} ${n}`, meta: { batch: run } })).id)
    const sizes = []
    const seen = []
    let cursor
    let last
    for (let i = 0; i < 10; i += 1) {
      last = await s.list({ take: 2, order: 'asc', meta: { batch: run }, cursor })
      if (last.items.length === 0) break
      sizes.push(last.items.length)
      seen.push(...last.items.map((x) => x.id))
      check(`page ${sizes.length}: cursor is its last item's id`, last.cursor === last.items.at(-1).id, last.cursor)
      cursor = last.cursor
    }
    check('take=2 pages the 5 secrets as 2, 2, 1', sizes.join() === '2,2,1', sizes)
    check('in creation order, each once (order=asc)', seen.join() === ids.join(), seen)
    check('the page after the last is { items: [] }, without a cursor key', JSON.stringify(last) === '{"items":[]}', last)
    const desc = await s.list({ meta: { batch: run } })
    check('order defaults to desc', desc.items.map((x) => x.id).join() === [...ids].reverse().join())
    check('take=0 means 100', (await s.list({ take: 0, meta: { batch: run } })).items.length === 5)
    check('a negative take means 1', (await s.list({ take: -3, meta: { batch: run } })).items.length === 1)
    const lines = await collect(s.list({ meta: { batch: run } }).stream())
    check(
      "stream: every item, as { type: 'item', data } lines",
      lines.map((l) => `${l.type}:${l.data.id}`).join() === [...ids].reverse().map((id) => `item:${id}`).join(),
      lines.map((l) => l.type)
    )
    const streamed = await collect(s.list({ take: 2, order: 'asc', meta: { batch: run } }).stream())
    check('stream with take stops after that many', streamed.map((l) => l.data.id).join() === ids.slice(0, 2).join())
    await s.delete(ids[1])
    const afterDeleted = await s.list({ take: 2, order: 'asc', meta: { batch: run }, cursor: ids[1] })
    check(
      'the cursor of a secret deleted since gives { items: [] }',
      afterDeleted.items.length === 0,
      afterDeleted.items.map((x) => x.id),
      'G7'
    )
    const number = await s.list({ meta: { n: 3 } })
    check("meta filter 'n=3' does not match a stored number 3", number.items.length === 0, number.items.length, 'G13')
  })

  await section('errors as the SDK surfaces them', async () => {
    const missing = apiError(await raised(() => s.fetch(`@no-such-${run}`)))
    check('an unknown @alias is NOT_FOUND', missing[0] === 'NOT_FOUND', missing)
    check("with the message 'Not found'", missing[1] === 'Not found', missing[1], 'E10')
    const personal = apiError(await raised(() => s.create({ kind: 'personal', value: 'v' })))
    check(
      'a personal secret with a value is CONFLICT',
      personal[0] === 'CONFLICT' && personal[1] === 'Personal secrets cannot have a value',
      personal
    )
    const unknown = apiError(await raised(() => s.create({ colour: 'red' })))
    check('an unknown key is BAD_REQUEST', unknown[0] === 'BAD_REQUEST' && unknown[1] === '"colour" is not allowed', unknown)
    const kind = apiError(await raised(() => s.create({ kind: 'x' })))
    check('a bad kind is BAD_REQUEST', kind[0] === 'BAD_REQUEST', kind)
    check("in Joi's words", kind[1] === '"kind" must be one of [shared, personal]', kind[1], 'C7')
    const duplicate = apiError(await raised(() => s.create({ alias })))
    check('a duplicate alias is CONFLICT', duplicate[0] === 'CONFLICT', duplicate)
    check("'Unique constraint violation'", duplicate[1] === 'Unique constraint violation', duplicate[1], 'E4')
    const early = apiError(await raised(() => s.update(`no-such-${run}`, { kind: 'personal', value: 'x' })))
    check('update {personal, value} of an unknown id is the CONFLICT, before the lookup', early[0] === 'CONFLICT', early, 'E8')
    const underscore = apiError(await raised(() => s.update(created.id, { alias, meta: { _a: 1 } })))
    check("a meta key beginning with '_' is BAD_REQUEST on update", underscore[0] === 'BAD_REQUEST', underscore, 'D1')
    const hashed = await s.create({ meta: { '#x': 1, a: { '#b': 2 } } })
    const shown = (await s.fetch(hashed.id)).meta
    check("'#' meta keys are never answered, at any depth", JSON.stringify(shown) === '{"a":{}}', shown, 'C18')
    const merged = await s.create({ meta: { a: 1 } })
    await s.update(merged.id, { meta: { $update: { b: 2 }, c: 3 } })
    const mergedMeta = (await s.fetch(merged.id)).meta
    check('meta.$update wins over its sibling keys', JSON.stringify(mergedMeta) === '{"a":1,"b":2}', mergedMeta, 'D5')
    const blueprint = apiError(await raised(() => s.create({ blueprintId: 'abc' })))
    check(
      'an unknown blueprintId is BAD_REQUEST',
      blueprint[0] === 'BAD_REQUEST' && blueprint[1] === 'Blueprint not found (blueprintId)',
      blueprint,
      'E5'
    )
    const wrong = new ChatBotKit({ baseUrl, secret: 'sk-wrong-token' })
    const denied = apiError(await raised(() => wrong.secret.list()))
    check('a wrong token is NOT_AUTHENTICATED', denied[0] === 'NOT_AUTHENTICATED', denied)
    const victim = await s.create({ name: `victim ${run}` })
    const deleted = await s.delete(victim.id)
    check('delete answers the id', deleted.id === victim.id, deleted)
    check('then fetch is NOT_FOUND', apiError(await raised(() => s.fetch(victim.id)))[0] === 'NOT_FOUND')
    check('and a second delete is NOT_FOUND', apiError(await raised(() => s.delete(victim.id)))[0] === 'NOT_FOUND')
  })

  await section('verify, authenticate, revoke', async () => {
    const verified = await s.verify(created.id)
    check(
      'verify of a bearer secret with a value: authenticated, no action',
      verified.id === created.id && verified.status === 'authenticated' && !('action' in verified),
      verified
    )
    const bare = await s.create({ type: 'bearer' })
    const unverified = await s.verify(bare.id)
    check(
      'without a value: unauthenticated, with an authenticate action',
      unverified.status === 'unauthenticated' &&
        unverified.action?.type === 'authenticate' &&
        unverified.action.url.includes(`/secrets/${bare.id}/manager/authenticate?`) &&
        unverified.action.url.includes('cbk=1&auth=1&unfurl=0'),
      unverified
    )
    check(
      "the authorize url ends with '#target=_popup&unfurl=0'",
      (unverified.action?.url || '').endsWith('#target=_popup&unfurl=0'),
      unverified.action?.url,
      'I4'
    )
    const blank = await s.create({ type: 'bearer', value: '   ' })
    check('a value of blanks is not usable: unauthenticated', (await s.verify(blank.id)).status === 'unauthenticated', '', 'I3')
    const auth = await s.authenticate(created.id)
    check(
      'authenticate answers { id, url } to the authorize page',
      auth.id === created.id && auth.url.includes(`/secrets/${created.id}/manager/authenticate`),
      auth
    )
    const revoked = await s.revoke(created.id)
    check('revoke answers the id', revoked.id === created.id, revoked)
    check('after revoke: unauthenticated', (await s.verify(created.id)).status === 'unauthenticated')
    check('the secret itself stays', (await s.fetch(created.id)).alias === alias)
    const again = apiError(await raised(() => s.revoke(created.id)))
    check('revoke with no value left is NOT_FOUND', again[0] === 'NOT_FOUND', again)
    check("with the message 'Not found'", again[1] === 'Not found', again[1], 'I9')
    const personal = await s.create({ kind: 'personal', type: 'oauth' })
    const pv = apiError(await raised(() => s.verify(personal.id)))
    check('verify of a personal secret is CONFLICT', pv[0] === 'CONFLICT', pv)
    check("'Cannot verify secret for this secret configuration'", pv[1] === 'Cannot verify secret for this secret configuration', pv[1], 'I5')
    const pa = apiError(await raised(() => s.authenticate(personal.id)))
    check('authenticate of a personal secret is CONFLICT', pa[0] === 'CONFLICT', pa)
    check(
      "'Cannot authenticate secret for this secret configuration'",
      pa[1] === 'Cannot authenticate secret for this secret configuration',
      pa[1],
      'I8'
    )
    const pr = apiError(await raised(() => s.revoke(personal.id)))
    check('revoke of a personal secret is CONFLICT', pr[0] === 'CONFLICT', pr)
    check("with the message 'Conflict'", pr[1] === 'Conflict', pr[1], 'I9')
    check('verify of an unknown id is NOT_FOUND', apiError(await raised(() => s.verify(`@no-such-${run}`)))[0] === 'NOT_FOUND')
  })
}

function finish() {
  const pending = Object.keys(report.byItem)
    .filter((item) => item in PENDING && !report.byItem[item].every(Boolean))
    .sort()
  for (const [item, results] of Object.entries(report.byItem).sort()) {
    if (item in PENDING && results.every(Boolean)) {
      report.failed += 1
      console.log(`FIXED    [${item}] every check of it passes now: remove ${item} from tests/sdk/pending.json`)
    }
  }
  console.log(
    `node SDK (@chatbotkit/sdk ${SDK_VERSION}) scenario: ${report.ok} checks ok, ${pending.length} pending items` +
      ` (${pending.join(', ') || 'none'}), ${report.failed} failed`
  )
  return report.failed ? 1 : 0
}

const [baseUrl, token] = process.argv.slice(2)
if (!baseUrl || !token) {
  console.log('usage: node tests/sdk/node/scenario.mjs BASE_URL TOKEN')
  process.exit(2)
}
try {
  await scenario(baseUrl, token)
} catch (error) {
  report.failed += 1
  console.log(`FAIL     the scenario stopped: ${error && error.stack ? error.stack : error}`)
}
process.exit(finish())
