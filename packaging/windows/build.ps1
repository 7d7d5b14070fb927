# Build the Windows installer: PyInstaller one-folder app, signed when a certificate is
# configured, wrapped by Inno Setup, then smoke-tested.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-OutDir dist]
#
# Needs Python 3.11+ (64-bit) as `python` and Inno Setup 6 (ISCC.exe on PATH or in its
# default folder; `choco install innosetup`). Signing, optional: WINDOWS_CERTIFICATE (the
# .pfx, base64) and WINDOWS_CERTIFICATE_PASSWORD; signtool.exe from the Windows SDK.
# Produces OutDir\postroom-VERSION-windows-x64-setup.exe. The release workflow runs this.
param([string]$OutDir = "dist")
$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$Repo = (Resolve-Path "$PSScriptRoot\..\..").Path
Set-Location $Repo
$Build = Join-Path $Repo "build"
$Venv = Join-Path $Build "packaging-venv"
$Python = Join-Path $Venv "Scripts\python.exe"
$Bundle = Join-Path $Build "pyinstaller\dist\postroom"
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
$OutDir = (Resolve-Path $OutDir).Path

function Step($Message) { Write-Host "==> $Message" }
function Invoke-Checked {
    param([string]$Exe, [string[]]$Arguments)
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

Step "Build environment"
if (-not (Test-Path $Python)) { Invoke-Checked python @("-m", "venv", $Venv) }
Invoke-Checked $Python @("-m", "pip", "install", "-q", "--disable-pip-version-check", ".[packaging]")

Step "Icons"
$env:QT_QPA_PLATFORM = "offscreen"
Invoke-Checked $Python @("packaging\render_icons.py", "$Build\icons")
Remove-Item Env:QT_QPA_PLATFORM

Step "PyInstaller"
$env:POSTROOM_ICON_DIR = "$Build\icons"
Invoke-Checked (Join-Path $Venv "Scripts\pyinstaller.exe") @(
    "--noconfirm", "--clean", "--log-level", "WARN",
    "--distpath", "$Build\pyinstaller\dist", "--workpath", "$Build\pyinstaller\work",
    "packaging\pyinstaller\postroom.spec")
$Version = (& "$Bundle\postroom.exe" --version).Split(" ")[-1]
if ($LASTEXITCODE -ne 0) { throw "the frozen postroom.exe does not start" }

$SignArgs = @()
if ($env:WINDOWS_CERTIFICATE) {
    Step "Signing the executables"
    $Pfx = Join-Path $env:RUNNER_TEMP "postroom-signing.pfx"
    if (-not $env:RUNNER_TEMP) { $Pfx = Join-Path $Build "postroom-signing.pfx" }
    [IO.File]::WriteAllBytes($Pfx, [Convert]::FromBase64String($env:WINDOWS_CERTIFICATE))
    $SignTool = (Get-Command signtool.exe -ErrorAction SilentlyContinue).Source
    if (-not $SignTool) {
        $SignTool = Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" |
            Sort-Object FullName | Select-Object -Last 1 -ExpandProperty FullName
    }
    $Common = @("sign", "/f", $Pfx, "/p", $env:WINDOWS_CERTIFICATE_PASSWORD, "/fd", "SHA256",
        "/tr", "http://timestamp.digicert.com", "/td", "SHA256")
    Invoke-Checked $SignTool ($Common + @("$Bundle\postroom.exe", "$Bundle\postroom-gui.exe"))
    # Inno Setup signs the installer and uninstaller through this named tool ($f: the file).
    $SignArgs = @("/Ssigntool=`"$SignTool`" $($Common -join ' ') `$f", "/DSignTool=signtool")
}

Step "Inno Setup"
$Iscc = (Get-Command ISCC.exe -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
Invoke-Checked $Iscc (@("/Q", "/DAppVersion=$Version", "/DBundleDir=$Bundle", "/DOutputDir=$OutDir",
    "/DIconFile=$Build\icons\postroom.ico") + $SignArgs + @("packaging\windows\postroom.iss"))
$Installer = Join-Path $OutDir "postroom-$Version-windows-x64-setup.exe"
if (-not (Test-Path $Installer)) { throw "Inno Setup produced no $Installer" }

Step "Smoke test: silent install, run, uninstall"
$Target = Join-Path $Build "smoke-install"
Start-Process -Wait -FilePath $Installer -ArgumentList @(
    "/VERYSILENT", "/SUPPRESSMSGBOXES", "/NORESTART", "/CURRENTUSER", "/TASKS=", "/DIR=$Target")
Invoke-Checked $Python @("packaging\smoke_test.py", "$Target\postroom.exe", "--windowed", "$Target\postroom-gui.exe")
Start-Process -Wait -FilePath "$Target\unins000.exe" -ArgumentList @("/VERYSILENT", "/SUPPRESSMSGBOXES", "/NORESTART")
if (Test-Path "$Target\postroom.exe") { throw "the uninstaller left $Target\postroom.exe behind" }
Write-Host "Built $Installer"
