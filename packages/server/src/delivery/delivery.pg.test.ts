// Runs only when TEST_DATABASE_URL is set (scripts/test.ts leaves it out otherwise).
import { postgresFactory } from '../store/test-db.ts'
import { deliverySuite } from './delivery-suite.ts'

deliverySuite(postgresFactory(process.env.TEST_DATABASE_URL as string))
