// Evaluates IAM requests with @cloud-copilot/iam-simulate, independently of moto.
// stdin: JSON list of {identityPolicies, permissionBoundaries?, action, resource, principal?, context}
// stdout: JSON list of {result, ignoredContextKeys, errors?}, one per case, in order.
import { readFileSync } from 'node:fs'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const ACCOUNT = '123456789012'
const named = (prefix, policies) => (policies ?? []).map((policy, i) => ({ name: `${prefix}${i}`, policy }))

const cases = JSON.parse(readFileSync(0, 'utf8'))
const results = []
for (const c of cases) {
  const response = await runSimulation(
    {
      request: {
        principal: c.principal ?? `arn:aws:iam::${ACCOUNT}:role/ec2hub/caller`,
        action: c.action,
        resource: { resource: c.resource, accountId: c.resourceAccount ?? ACCOUNT },
        contextVariables: c.context ?? {}
      },
      identityPolicies: named('identity', c.identityPolicies),
      permissionBoundaryPolicies: c.permissionBoundaries ? named('boundary', c.permissionBoundaries) : undefined,
      serviceControlPolicies: [],
      resourceControlPolicies: []
    },
    { simulationMode: 'Strict' }
  )
  if (response.resultType === 'error') {
    results.push({ result: 'Error', errors: response.errors })
  } else {
    const single = response.resultType === 'single' ? response.result : response.results[0]
    results.push({
      result: response.overallResult,
      resultType: response.resultType,
      ignoredContextKeys: single?.ignoredContextKeys ?? []
    })
  }
}
process.stdout.write(JSON.stringify(results) + '\n')
