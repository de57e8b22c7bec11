# Build deskcorder-<version>-x64.msi with the WiX Toolset v5.
# NOT run on the Linux development machines: .github/workflows/packages.yml runs
# it on a Windows runner that has Python 3.11 (x64) and `wix` on PATH:
#   dotnet tool install --global wix --version 5.0.2
#   wix extension add -g WixToolset.Util.wixext/5.0.2
#
#   pwsh packaging/windows/build-msi.ps1 [-Out dist]
param([string]$Out = "dist")
$ErrorActionPreference = "Stop"
$Repo = (Resolve-Path "$PSScriptRoot\..\..").Path
$Version = (Select-String -Path "$Repo\src\deskcorder\__init__.py" -Pattern '^__version__ = "(.*)"$').Matches[0].Groups[1].Value
$PyVersion = "3.11.9"   # the embeddable CPython shipped inside the MSI (same minor as the builder)

$Work = Join-Path ([IO.Path]::GetTempPath()) ("deskcorder-msi-" + [guid]::NewGuid())
$App = "$Work\app"
$Py = "$App\python"
New-Item -ItemType Directory -Force -Path $Py, "$App\examples", $Out | Out-Null

Invoke-WebRequest "https://www.python.org/ftp/python/$PyVersion/python-$PyVersion-embed-amd64.zip" -OutFile "$Work\python.zip"
Expand-Archive "$Work\python.zip" -DestinationPath $Py
# let the embeddable interpreter see Lib\site-packages
$pth = Get-ChildItem $Py -Filter "python3*._pth" | Select-Object -First 1
$zip = (Get-ChildItem $Py -Filter "python3*.zip" | Select-Object -First 1).Name
Set-Content -Path $pth.FullName -Value "$zip`r`n.`r`nLib\site-packages`r`nimport site" -Encoding ascii

python -m pip install --no-compile --target "$Py\Lib\site-packages" "$Repo[screenshots]"
Copy-Item -Recurse "$PSScriptRoot\admx" "$App\admx"
Copy-Item "$Repo\configs\*.toml" "$App\examples\"
Copy-Item "$PSScriptRoot\deskcorder-task.xml" "$App\deskcorder-task.xml.template"

wix build "$PSScriptRoot\deskcorder.wxs" -arch x64 -ext WixToolset.Util.wixext `
  -d Version=$Version -bindpath App=$App -o "$Out\deskcorder-$Version-x64.msi"
Write-Host "build-msi: wrote $Out\deskcorder-$Version-x64.msi"
Remove-Item -Recurse -Force $Work
