// @peculiar/x509, with the reflect-metadata polyfill its dependency injection
// needs loaded first and Node's WebCrypto as its provider. Import x509 from here only.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

export { x509 };
